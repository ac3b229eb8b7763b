import { Alert, Badge, Button, Center, Group, Loader, Menu, Stack, Text } from '@mantine/core';
import { useLayoutEffect, useMemo, useRef, useState } from 'react';
import { errorMessage } from '../../api/client';
import { useMessages, useTicketEvents } from '../../api/queries';
import type { Message, TicketEvent } from '../../api/types';
import { useMe } from '../../auth/session';
import { t } from '../../i18n/pt-BR';
import { formatDate, formatWhen } from '../../lib/format';
import { quotedOf, splitSignature } from './media';

export { splitSignature };
import { MessageContent, QuoteBlock } from './MessageMedia';

function TickIcon({ status }: { status: string }) {
  const common = { width: 16, height: 12, viewBox: '0 0 16 12', fill: 'none', stroke: 'currentColor', strokeWidth: 1.6, 'aria-hidden': true } as const;
  if (status === 'pending') {
    return (
      <svg {...common} viewBox="0 0 12 12" width={12}>
        <circle cx="6" cy="6" r="4.6" />
        <path d="M6 3.4V6l1.8 1.2" />
      </svg>
    );
  }
  if (status === 'failed') {
    return (
      <svg {...common} viewBox="0 0 12 12" width={12}>
        <circle cx="6" cy="6" r="4.6" />
        <path d="M6 3.2v3.4M6 8.4v.4" />
      </svg>
    );
  }
  if (status === 'sent') {
    return (
      <svg {...common}>
        <path d="M1.5 6.5l3 3 6-7" />
      </svg>
    );
  }
  if (status === 'delivered' || status === 'read') {
    return (
      <svg {...common}>
        <path d="M1 6.5l3 3 6-7M7 9.5l6-7" />
      </svg>
    );
  }
  return null;
}

export function DeliveryTicks({ status }: { status: string }) {
  const label = t.ticket.delivery[status] ?? status;
  return (
    <Text
      span
      c={status === 'read' ? 'blue.7' : status === 'failed' ? 'red.7' : 'dimmed'}
      role="img"
      aria-label={label}
      title={label}
      data-testid="ticks"
      data-status={status}
      style={{ display: 'inline-flex', alignItems: 'center' }}
    >
      <TickIcon status={status} />
    </Text>
  );
}


/** What a person did to an earlier message: the backend records it as a message of its own that
 * `annotates` the earlier one (never rewriting it), with `quoted` describing that message. */
const ANNOTATIONS = new Set(['edit', 'revoke', 'reaction']);

export function isAnnotation(message: Message): boolean {
  return ANNOTATIONS.has(message.type);
}

/** What the loaded entries say happened to a message: edited (and `editedTo`: the newest edit's
 * text that did not fail, what the chat shows now), deleted for everyone (by whom), and the latest
 * reaction of each side ('in': the client; 'out': the connection's own phone). */
export type Marks = { edited: boolean; editedTo?: string; revoked: 'in' | 'out' | null; reactions: { in?: string; out?: string } };

export function annotationMarks(messages: Message[]): Map<string, Marks> {
  const marks = new Map<string, Marks>();
  const ordered = messages
    .map((message, index) => ({ message, index }))
    .sort((a, b) => a.message.created_at.localeCompare(b.message.created_at) || a.index - b.index);
  for (const { message } of ordered) {
    // A change WhatsApp refused never happened for the client: the message keeps its marks (and
    // its Editar / Apagar), and the change's own entry shows it failed.
    if (!isAnnotation(message) || !message.annotates || message.status === 'failed') continue;
    const mark = marks.get(message.annotates) ?? { edited: false, revoked: null, reactions: {} };
    const side = message.direction === 'in' ? 'in' : 'out';
    if (message.type === 'edit') {
      mark.edited = true;
      mark.editedTo = message.body;
    } else if (message.type === 'revoke') mark.revoked = side;
    else if (message.body) mark.reactions[side] = message.body;
    else delete mark.reactions[side]; // the reaction was taken back
    marks.set(message.annotates, mark);
  }
  return marks;
}

function MarksLine({ marks }: { marks: Marks }) {
  const parts: { key: string; text: string; title?: string }[] = [];
  if (marks.edited) parts.push({ key: 'edited', text: t.ticket.annotation.markEdited });
  if (marks.revoked) {
    parts.push({ key: 'revoked', text: marks.revoked === 'in' ? t.ticket.annotation.markRevokedByClient : t.ticket.annotation.markRevoked });
  }
  if (marks.reactions.in) parts.push({ key: 'in', text: marks.reactions.in, title: t.ticket.annotation.reactionIn(marks.reactions.in) });
  if (marks.reactions.out) parts.push({ key: 'out', text: marks.reactions.out, title: t.ticket.annotation.reactionOut(marks.reactions.out) });
  if (parts.length === 0) return null;
  return (
    <Text size="xs" c="dimmed" fs="italic" data-testid="annotation-marks" aria-label={t.ticket.annotation.marks}>
      {parts.map((part, index) => (
        <span key={part.key} title={part.title} aria-label={part.title} data-mark={part.key}>
          {index > 0 ? ' · ' : ''}
          {part.text}
        </span>
      ))}
    </Text>
  );
}

/** The time, the delivery ticks of what was sent, and why a send failed: the same on every bubble. */
/** What a bubble offers and shows besides its message: "Responder" (`onReply`, only where a reply
 * can be sent), "Escrever de novo" on a failed reply (`onRewrite`, the same), and what later
 * entries of the thread say happened to it (`marks`: edited, deleted, reactions). */
type BubbleExtras = {
  onReply?: (message: Message) => void;
  onRewrite?: (message: Message) => void;
  /** Where a reply can be sent: react to a WhatsApp message with an emoji ("" takes it back). */
  onReact?: (message: Message, emoji: string) => void;
  /** The same: delete for everyone a message the connection sent. */
  onRevoke?: (message: Message) => void;
  /** The same: correct a text reply of one's own (`current`: its text as the chat shows it now). */
  onEdit?: (message: Message, current: string) => void;
  marks?: Marks;
};

/** The reactions an agent picks from (WhatsApp's own first six). */
export const REACTIONS = ['👍', '❤️', '😂', '😮', '😢', '🙏'];

/** A WhatsApp message one can react to: the client's, or one the connection sent (it has left). */
function reactable(message: Message): boolean {
  if (message.direction === 'in') return true;
  return message.direction === 'out' && ['sent', 'delivered', 'read'].includes(message.status);
}

/** WhatsApp lets a message be edited this long after it was sent (backend messages.service EDIT_WINDOW). */
export const EDIT_WINDOW_MS = 15 * 60 * 1000;

/** A reply `meId` may still edit (the backend's rules): its own text, sent, within EDIT_WINDOW_MS. */
export function editable(message: Message, meId: string, now = Date.now()): boolean {
  return (
    message.direction === 'out' &&
    message.sender_type === 'agent' &&
    message.sender_id === meId &&
    message.type === 'text' &&
    !isAnnotation(message) &&
    ['sent', 'delivered', 'read'].includes(message.status) &&
    now - Date.parse(message.created_at) <= EDIT_WINDOW_MS
  );
}

/** "Editar", when the menu opens (the dropdown mounts then: the time window is read at that moment). */
function EditItem({ message, current, onEdit }: { message: Message; current?: string; onEdit: (message: Message, current: string) => void }) {
  const me = useMe();
  if (!editable(message, me.id)) return null;
  return <Menu.Item onClick={() => onEdit(message, current ?? message.body)}>{t.ticket.edit}</Menu.Item>;
}

function ReactMenu({
  message,
  onReact,
  onRevoke,
  onEdit,
  mine,
  current,
}: {
  message: Message;
  onReact: (message: Message, emoji: string) => void;
  onRevoke?: (message: Message) => void;
  onEdit?: (message: Message, current: string) => void;
  mine?: string;
  current?: string;
}) {
  return (
    <Menu position="top-start" withinPortal>
      <Menu.Target>
        <Button size="compact-xs" variant="subtle" color="gray" aria-label={t.ticket.react} data-testid="react">
          ☺
        </Button>
      </Menu.Target>
      <Menu.Dropdown>
        <Group gap={2} px={4}>
          {REACTIONS.map((emoji) => (
            <Menu.Item key={emoji} onClick={() => onReact(message, emoji)} aria-label={t.ticket.reactWith(emoji)} px={6}>
              {emoji}
            </Menu.Item>
          ))}
        </Group>
        {mine && <Menu.Item onClick={() => onReact(message, '')}>{t.ticket.unreact}</Menu.Item>}
        {onEdit && <EditItem message={message} current={current} onEdit={onEdit} />}
        {onRevoke && message.direction === 'out' && (
          <Menu.Item color="red" onClick={() => onRevoke(message)}>
            {t.ticket.revoke}
          </Menu.Item>
        )}
      </Menu.Dropdown>
    </Menu>
  );
}

/** Written this much earlier than IAZE filed it, a message reached IAZE late (a backlog, a history
 * sync after the phone was paired again, a catch-up after an outage): its bubble says so. */
export const LATE_AFTER_MS = 2 * 60 * 1000;

/** When WhatsApp says the message was written, if that is more than LATE_AFTER_MS before it was
 * filed (`created_at`); null otherwise (no `written_at`, or it arrived about when it was written). */
export function writtenLate(message: Message): string | null {
  if (!message.written_at) return null;
  const late = Date.parse(message.created_at) - Date.parse(message.written_at) > LATE_AFTER_MS; // false on NaN
  return late ? message.written_at : null;
}

const dayMonth = new Intl.DateTimeFormat('pt-BR', { day: '2-digit', month: '2-digit' });

/** "às 14:05" when `iso` is on the same day as `other`; else "em 05/12 às 14:05" (the full date
 * when the year differs too). */
function atOrOn(iso: string, other: string): string {
  const at = new Date(iso);
  const time = formatWhen(iso, at); // against its own day, formatWhen gives only the time
  if (formatDate(iso) === formatDate(other)) return t.ticket.late.at(time);
  const day = at.getFullYear() === new Date(other).getFullYear() ? dayMonth.format(at) : formatDate(iso);
  return t.ticket.late.on(day, time);
}

/** A bubble's time: when it was filed; for a message that arrived late, when it was written, with
 * when it arrived as a small note (and a title explaining both). */
function MessageTime({ message }: { message: Message }) {
  const written = writtenLate(message);
  if (!written) {
    return (
      <Text size="xs" c="dimmed">
        <time dateTime={message.created_at}>{formatWhen(message.created_at)}</time>
      </Text>
    );
  }
  const received = atOrOn(message.created_at, written);
  const explain = t.ticket.late.explain(atOrOn(written, message.created_at), received, message.direction === 'in');
  return (
    <Text size="xs" c="dimmed" title={explain} data-testid="written-late">
      <time dateTime={written}>{formatWhen(written)}</time>
      {' · '}
      <Text span inherit fs="italic" opacity={0.75} data-testid="received-late">
        {t.ticket.late.received(received)}
      </Text>
    </Text>
  );
}

function BubbleFooter({ message, onReply, onRewrite, onReact, onRevoke, onEdit, marks }: { message: Message } & BubbleExtras) {
  // A text reply that failed for good: its writer can send the same words again as a new reply.
  const rewritable = onRewrite && message.status === 'failed' && message.sender_type === 'agent' && message.type === 'text';
  return (
    <>
      <Group gap={4} justify="flex-end">
        {onReply && (
          <Button
            size="compact-xs"
            variant="subtle"
            color="gray"
            onClick={() => onReply(message)}
            aria-label={t.media.replyThis}
            data-testid="reply-to"
            mr="auto"
          >
            ↩ {t.media.reply}
          </Button>
        )}
        {onReact && reactable(message) && (
          <ReactMenu
            message={message}
            onReact={onReact}
            onRevoke={marks?.revoked ? undefined : onRevoke}
            onEdit={marks?.revoked ? undefined : onEdit}
            mine={marks?.reactions.out}
            current={marks?.editedTo}
          />
        )}
        {marks && <MarksLine marks={marks} />}
        <MessageTime message={message} />
        {message.direction === 'out' && <DeliveryTicks status={message.status} />}
      </Group>
      {message.status === 'failed' && message.failure_reason && (
        <Text size="xs" c="red.7" data-testid="failure-reason">
          {t.ticket.failureReason(message.failure_reason)}
        </Text>
      )}
      {rewritable && (
        <Button size="compact-xs" variant="light" color="red" onClick={() => onRewrite(message)} data-testid="rewrite" style={{ alignSelf: 'flex-start' }}>
          {t.ticket.rewrite}
        </Button>
      )}
    </>
  );
}

/** One message of the thread (`BubbleExtras`: what it offers and shows besides it). */
export function MessageBubble({ message, onReply, onRewrite, onReact, onRevoke, onEdit, marks }: { message: Message } & BubbleExtras) {
  if (message.direction === 'note') return <NoteBubble message={message} />;
  if (isAnnotation(message)) return <AnnotationBubble message={message} />;
  const quoted = quotedOf(message);
  return (
    <div
      className="bubble"
      data-direction={message.direction}
      data-testid="message"
      aria-label={message.direction === 'in' ? t.ticket.incoming : message.automatic ? t.automation.labelHint : t.ticket.outgoing}
      data-automatic={message.automatic ? 'true' : undefined}
    >
      {message.automatic ? (
        <Group gap={6} wrap="nowrap">
          <Badge
            size="xs"
            variant="light"
            color="gray"
            data-testid="automatic"
            data-purpose={message.automatic_purpose ?? undefined}
            title={[t.automation.labelHint, t.automation.purpose[message.automatic_purpose ?? '']].filter(Boolean).join(': ')}
          >
            {t.automation.label}
          </Badge>
          {message.sender_name && (
            <Text size="xs" c="dimmed">
              {message.sender_name}
            </Text>
          )}
        </Group>
      ) : (
        message.direction === 'out' &&
        message.sender_name && (
          <Text size="xs" c="dimmed">
            {message.sender_name}
          </Text>
        )
      )}
      {quoted && <QuoteBlock quoted={quoted} />}
      <MessageContent message={message} />
      {message.body && <Body body={message.body} signed={message.direction === 'out'} />}
      <BubbleFooter message={message} onReply={onReply} onRewrite={onRewrite} onReact={onReact} onRevoke={onRevoke} onEdit={onEdit} marks={marks} />
    </div>
  );
}

function annotationLabel(message: Message): string {
  if (message.type === 'edit') return t.ticket.annotation.edited;
  if (message.type === 'revoke') return t.ticket.annotation.revoked;
  return message.body ? t.ticket.annotation.reacted(message.body) : t.ticket.annotation.unreacted;
}

/** An edit, a deletion for everyone or a reaction: a compact labelled entry on the side of who did
 * it, quoting the earlier message (which stays in the thread as it was, so its words are kept). */
function AnnotationBubble({ message }: { message: Message }) {
  const quoted = quotedOf(message) ?? { message_id: message.annotates ?? null, body: '', type: 'text' };
  return (
    <div
      className="bubble"
      data-direction={message.direction}
      data-annotation={message.type}
      data-testid="message"
      aria-label={message.direction === 'in' ? t.ticket.incoming : t.ticket.outgoing}
    >
      {message.direction === 'out' && message.sender_name && (
        <Text size="xs" c="dimmed">
          {message.sender_name}
        </Text>
      )}
      <Text size="xs" fw={600} data-testid="annotation-label">
        {annotationLabel(message)}
      </Text>
      <QuoteBlock quoted={quoted} />
      {message.type === 'edit' && message.body && (
        // An agent's edit is signed as its replies are: shown the same way (the name in bold).
        <div data-testid="annotation-body">
          <Body body={message.body} signed={message.direction === 'out'} />
        </div>
      )}
      <BubbleFooter message={message} />
    </div>
  );
}

function Body({ body, signed }: { body: string; signed: boolean }) {
  const { signature, text } = signed ? splitSignature(body) : { signature: null, text: body };
  return (
    <>
      {signature && (
        <Text size="sm" fw={700} data-testid="signature">
          {signature}
        </Text>
      )}
      <Text size="sm">{text}</Text>
    </>
  );
}

/** Staff-only: set apart from the conversation with the client (yellow, centred, labelled). */
function NoteBubble({ message }: { message: Message }) {
  return (
    <div className="bubble" data-direction="note" data-testid="message" role="note" aria-label={t.ticket.noteLabel}>
      <Text size="xs" fw={600} c="yellow.9">
        {t.ticket.note}
        {message.sender_name ? ` · ${message.sender_name}` : ''}
      </Text>
      <Text size="sm">{message.body}</Text>
      <Group gap={4} justify="flex-end">
        <Text size="xs" c="dimmed">
          <time dateTime={message.created_at}>{formatWhen(message.created_at)}</time>
        </Text>
      </Group>
    </div>
  );
}

export function timelineText(event: TicketEvent): string {
  // Events store ids; a client acting (its menu choice, its rating) has no user name to resolve.
  const who = event.actor_name || (event.actor_role === 'client' ? t.ticket.timeline.theClient : t.ticket.timeline.someone);
  const to = event.target_name || '—';
  if (event.type === 'created') return t.ticket.timeline.created(who);
  if (event.type === 'assumed') return t.ticket.timeline.assumed(who);
  if (event.type === 'finalized') return t.ticket.timeline.finalized(who);
  if (event.type === 'transferred') {
    if (event.data?.reason === 'agent_deactivated') {
      return event.actor_id === event.data.from_agent_id
        ? t.ticket.timeline.handedBackOnDeactivation(who, to)
        : t.ticket.timeline.releasedOnDeactivation(who, to);
    }
    return event.data && 'to_department_id' in event.data
      ? t.ticket.timeline.transferredToDepartment(who, to)
      : t.ticket.timeline.transferredToAgent(who, to);
  }
  // Issue 16 (backend/automation): the client's answer to the department menu, or the menu giving
  // up after too many invalid answers; the client's satisfaction rating.
  if (event.type === 'routed') {
    if (event.data?.by_phone) return t.ticket.timeline.menuByPhone(to);
    return event.data?.fallback ? t.ticket.timeline.menuFallback(to) : t.ticket.timeline.menuChosen(who, to);
  }
  if (event.type === 'rated') {
    const rating = Number(event.data?.rating);
    return t.ticket.timeline.rated(who, Number.isFinite(rating) ? t.ticket.ratingValue(rating) : '—');
  }
  return t.ticket.timeline.other(who);
}

function TimelineRow({ event }: { event: TicketEvent }) {
  return (
    <Text size="xs" c="dimmed" ta="center" data-testid="timeline-event" data-type={event.type}>
      {timelineText(event)} · <time dateTime={event.at}>{formatWhen(event.at)}</time>
    </Text>
  );
}

type Item = { key: string; at: string; message?: Message; event?: TicketEvent };

/** Messages and the ticket's events in one line of time. An event older than the oldest loaded
 * message waits for that older page (when there is one), so it never shows out of place. */
export function mergeTimeline(messages: Message[], events: TicketEvent[], complete: boolean): Item[] {
  const oldest = messages[0]?.created_at;
  const items: Item[] = messages.map((m) => ({ key: m.id, at: m.created_at, message: m }));
  for (const event of events) {
    if (event.type === 'created') continue; // the first message already opens the thread
    if (!complete && oldest !== undefined && event.at < oldest) continue;
    items.push({ key: `event-${event.id}`, at: event.at, event });
  }
  // Stable: a message and an event at the same instant keep messages first.
  return items
    .map((item, index) => ({ item, index }))
    .sort((a, b) => a.item.at.localeCompare(b.item.at) || a.index - b.index)
    .map(({ item }) => item);
}

const NEAR_BOTTOM = 48;
const NEAR_TOP = 120;

/** A ticket's thread. Opens at its newest message; scrolling up loads older pages and keeps what
 * the reader was looking at in place; new messages are followed only when the reader is at the
 * bottom (or wrote them), otherwise a pill says how many arrived below. */
export function MessageThread({
  ticketId,
  showTimeline = true,
  onReply,
  onRewrite,
  onReact,
  onRevoke,
  onEdit,
}: {
  ticketId: string;
  showTimeline?: boolean;
  onReply?: (message: Message) => void;
  /** Only where a reply can be sent: a failed reply's text goes back to the composer. */
  onRewrite?: (message: Message) => void;
  onReact?: (message: Message, emoji: string) => void;
  onRevoke?: (message: Message) => void;
  onEdit?: (message: Message, current: string) => void;
}) {
  const me = useMe();
  const query = useMessages(ticketId);
  const events = useTicketEvents(ticketId);
  const box = useRef<HTMLDivElement>(null);
  const atBottom = useRef(true);
  const anchor = useRef<{ height: number; top: number } | null>(null);
  const seen = useRef<{ oldest?: string; newest?: string }>({});
  // The newest message the reader had seen when more arrived below it; null when up to date.
  const [seenUpTo, setSeenUpTo] = useState<string | null>(null);

  const messages = useMemo(() => [...(query.data?.pages ?? [])].reverse().flatMap((p) => p.items), [query.data]);
  const marks = useMemo(() => annotationMarks(messages), [messages]);
  const items = useMemo(
    () => mergeTimeline(messages, showTimeline ? events.data ?? [] : [], !query.hasNextPage),
    [messages, events.data, showTimeline, query.hasNextPage],
  );
  const oldest = messages[0]?.id;
  const newest = messages[messages.length - 1];
  const seenIndex = seenUpTo === null ? -1 : messages.findIndex((m) => m.id === seenUpTo);
  const unseen = seenIndex < 0 ? 0 : messages.length - 1 - seenIndex;

  const toBottom = () => {
    const el = box.current;
    if (el) el.scrollTop = el.scrollHeight;
    atBottom.current = true;
    setSeenUpTo(null);
  };

  useLayoutEffect(() => {
    const el = box.current;
    const before = seen.current;
    seen.current = { oldest, newest: newest?.id };
    if (!el || newest === undefined) return;
    if (anchor.current && oldest !== before.oldest) {
      // An older page went in above: keep the reader's place (distance from the bottom).
      el.scrollTop = el.scrollHeight - anchor.current.height + anchor.current.top;
      anchor.current = null;
    }
    if (newest.id === before.newest) return;
    if (before.newest === undefined || atBottom.current || (newest.sender_id === me.id && newest.direction !== 'in')) {
      toBottom();
    } else {
      const previous = before.newest;
      setSeenUpTo((current) => current ?? previous);
    }
  }, [oldest, newest, me.id]);

  useLayoutEffect(() => {
    // Timeline rows arriving after the messages must not push the newest message out of view.
    if (atBottom.current && box.current) box.current.scrollTop = box.current.scrollHeight;
  }, [items.length]);

  const loadOlder = () => {
    const el = box.current;
    if (!query.hasNextPage || query.isFetchingNextPage) return;
    if (el) anchor.current = { height: el.scrollHeight, top: el.scrollTop };
    void query.fetchNextPage();
  };

  const onScroll = () => {
    const el = box.current;
    if (!el) return;
    atBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < NEAR_BOTTOM;
    if (atBottom.current && seenUpTo !== null) setSeenUpTo(null);
    if (el.scrollTop < NEAR_TOP) loadOlder();
  };

  return (
    <div style={{ position: 'relative', flex: 1, minHeight: 200, display: 'flex', flexDirection: 'column' }}>
      <Stack
        ref={box}
        onScroll={onScroll}
        gap="xs"
        p="sm"
        style={{ flex: 1, overflowY: 'auto', minHeight: 0, overflowAnchor: 'none' }}
        role="log"
        aria-label={t.ticket.thread}
        aria-live="polite"
        data-testid="thread"
      >
        {query.hasNextPage && (
          <Button variant="subtle" onClick={loadOlder} loading={query.isFetchingNextPage} data-testid="older-messages">
            {t.ticket.olderMessages}
          </Button>
        )}
        {query.isPending && (
          <Center>
            <Loader size="sm" aria-label={t.app.loading} />
          </Center>
        )}
        {query.isError && (
          <Alert color="red" role="alert">
            {errorMessage(query.error)}
          </Alert>
        )}
        {query.isSuccess && messages.length === 0 && <Text c="dimmed">{t.ticket.noMessages}</Text>}
        {items.map((item) =>
          item.message ? (
            <MessageBubble
              key={item.key}
              message={item.message}
              onReply={isAnnotation(item.message) ? undefined : onReply}
              onRewrite={onRewrite}
              onReact={isAnnotation(item.message) ? undefined : onReact}
              onRevoke={onRevoke}
              onEdit={isAnnotation(item.message) ? undefined : onEdit}
              marks={marks.get(item.message.id)}
            />
          ) : (
            <TimelineRow key={item.key} event={item.event as TicketEvent} />
          ),
        )}
      </Stack>
      {unseen > 0 && (
        <Button
          size="compact-sm"
          radius="xl"
          onClick={toBottom}
          data-testid="new-messages"
          style={{ position: 'absolute', bottom: 12, left: '50%', transform: 'translateX(-50%)', boxShadow: 'var(--mantine-shadow-sm)' }}
        >
          {t.ticket.newMessages(unseen)} ↓
        </Button>
      )}
    </div>
  );
}
