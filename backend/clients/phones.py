"""Numbers that are one WhatsApp account, and the one form a client's phone key takes for them.

WhatsApp (and Evolution API v2 in front of it) reaches some accounts by two numbers. A client
saved with one form writes in from the other, so every key that finds a client (or a chat) by
phone uses `key_form`: one representative per class. The client's own `phone` keeps the number
as it was typed or received; only keys are canonical.

The classes, read in EvolutionAPI/evolution-api 2.3.6:
- `src/utils/createJid.ts` `formatBRNumber`: a 13-digit "55" + DDD + 1 digit + 8 digits goes to
  the JID without that digit when the 8 digits start with 7-9 (`joker >= 7`, Evolution's test
  for a mobile) and the DDD is 31 or more: accounts registered before Brazil added the ninth
  digit to mobiles (2012-2016, DDDs 31 and up last) kept 12-digit JIDs, and their messages come
  from "55 DDD 8 digits".
- `whatsappNumber` (whatsapp.baileys.service.ts) and `src/utils/onWhatsappCache.ts`
  `getAvailableNumbers`: before a send, both forms of ANY "55" number (with and without the
  ninth digit, whatever the DDD) are one entry, and the send goes to whichever JID WhatsApp
  answers for them. So the account behind a 6xxx-xxxx mobile, or a DDD below 31, may also answer
  from the 12-digit JID.
- the same two places for Mexico and Argentina ("Ref: https://faq.whatsapp.com/1294841057948784"):
  "52" + "1" + 10 digits is "52" + 10 digits, and "54" + "9" + 10 digits is "54" + 10 digits
  (`formatMXOrARNumber` drops the third digit of any 13-digit 52/54 number when it builds a JID).

The rule here (`key_form`):
- Brazil: "55" + DDD (two digits 1-9: no DDD has a 0) + 8 digits starting 6-9 is the same line as
  "55" + DDD + "9" + those 8 digits. Eight-digit mobiles started 6-9 before the ninth digit was
  prefixed to every one of them (Evolution's createJid only guesses 7-9 for its default JID; its
  number check accepts either form of any number), so the 12-digit form of a 6-9 number can only
  be that mobile. Landlines (8 digits starting 2-5) are never changed: "55 31 3xxx-xxxx" is a
  landline and "55 31 9 3xxx-xxxx" a different, newer mobile. Canonical: the 13-digit form, the
  number as Brazil's numbering plan writes it today (and as people type it).
- Mexico: "521" + 10 digits -> "52" + 10 digits (Mexico dropped the mobile "1" in 2019).
  Argentina: "549" + 10 digits -> "54" + 10 digits (the "9" marks a mobile when dialled from
  abroad; the 10-digit number is the line). Canonical: the number without the marker digit.
- Anything else is its own class: other countries, other lengths, and digits that are no valid
  number of these plans. Evolution's createJid would also drop a Brazilian fifth digit other than
  9 ("55 31 8 8xxx-xxxx") or a Mexican/Argentine third digit other than 1/9; such a number is a
  typo, not a second form of a real one, and is not aliased.
"""

import re

# 12 digits: "55" + DDD + an eight-digit mobile number as WhatsApp kept it before the ninth digit.
_BR_WITHOUT_NINE = re.compile(r"55([1-9]{2})([6-9][0-9]{7})")
# 13 digits: "52" + "1" + 10 digits (Mexico) or "54" + "9" + 10 digits (Argentina).
_MX_OR_AR_WITH_MARKER = re.compile(r"(521|549)([0-9]{10})")


def key_form(phone: str) -> str:
    """The one form of `phone` (digits only, as `normalize_phone` and WhatsApp ids give them)
    that every number reaching the same WhatsApp account shares. Idempotent; a number outside
    the classes above is returned as it is."""
    if (br := _BR_WITHOUT_NINE.fullmatch(phone)) is not None:
        return f"55{br[1]}9{br[2]}"
    if (marked := _MX_OR_AR_WITH_MARKER.fullmatch(phone)) is not None:
        return f"{marked[1][:2]}{marked[2]}"
    return phone


# A chat's WhatsApp address: the client's number (digits) when WhatsApp gives it, else its LID
# ("<lid>@lid"). WhatsApp's privacy addressing (LID, a per-account id that is not a number) names
# some chats only by it: Baileys 7 gives the number beside it (`remoteJidAlt`) only when the
# stanza carries it, so a client can write, be answered and be known without any number, and
# Evolution API 2.3.6 sends to "<lid>@lid" as it is (src/utils/createJid.ts).
LID_SUFFIX = "@lid"


def whatsapp_address(phone: str | None, lid: str | None) -> str:
    """Where the client is reached: the number when known (Evolution resolves it to the chat
    either way), the LID otherwise; "" for a client with neither (staff-made, no number)."""
    if phone:
        return phone
    return f"{lid}{LID_SUFFIX}" if lid else ""


def whatsapp_addresses(phone: str | None, lid: str | None) -> list[str]:
    """Every address naming the chat: a delivery may name a chat known by both forms by either
    (its number, or its LID alone), so what must be found again by the chat is keyed by each."""
    return [address for address in (phone or "", f"{lid}{LID_SUFFIX}" if lid else "") if address]


def address_key(address: str) -> str:
    """The form a chat's keys take (outbound chat order, echo markers, surveys): the number's
    `key_form`, or "lid:<lid>" for an address that is a LID."""
    if address.endswith(LID_SUFFIX):
        return f"lid:{address.removesuffix(LID_SUFFIX)}"
    return key_form("".join(ch for ch in address if ch.isdigit()))


def remote_jid(address: str) -> str:
    """The chat's JID as the provider names it (a media fetch's message key)."""
    if address.endswith(LID_SUFFIX):
        return address
    return f"{''.join(ch for ch in address if ch.isdigit())}@s.whatsapp.net"
