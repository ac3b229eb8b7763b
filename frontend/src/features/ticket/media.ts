import type { components } from '../../api/schema';
import type { Message } from '../../api/types';
import { t } from '../../i18n/pt-BR';

/** A message's attachment as the API describes it (backend/messages/schemas.py MediaRead): the
 * bytes live behind `url`, a path under /api/v1 that needs the bearer token. */
export type MediaInfo = components['schemas']['MediaRead'];
export type LocationInfo = { latitude: number; longitude: number; name?: string | null; address?: string | null };
export type ContactCard = { name: string; phones: string[] };
export type QuotedInfo = { message_id: string | null; body: string; type: string };

/** The optional media-era fields of a message, read defensively: messages stored before media was
 * kept carry a provider's raw dict (no url), and the generated schema may still type them loosely. */
type Extras = { media?: unknown; location?: unknown; contacts?: unknown; quoted?: unknown };

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null;

export function mediaOf(message: Message): MediaInfo | null {
  const media = (message as Extras).media;
  if (!isObject(media) || typeof media.url !== 'string' || typeof media.status !== 'string') return null;
  return media as unknown as MediaInfo;
}

export function locationOf(message: Message): LocationInfo | null {
  const location = (message as Extras).location;
  if (!isObject(location) || typeof location.latitude !== 'number' || typeof location.longitude !== 'number') return null;
  return location as unknown as LocationInfo;
}

export function contactsOf(message: Message): ContactCard[] {
  const contacts = (message as Extras).contacts;
  if (!Array.isArray(contacts)) return [];
  return contacts
    .filter(isObject)
    .map((c) => ({
      name: typeof c.name === 'string' ? c.name : '',
      phones: Array.isArray(c.phones) ? c.phones.filter((p): p is string => typeof p === 'string') : [],
    }));
}

export function quotedOf(message: Message): QuotedInfo | null {
  const quoted = (message as Extras).quoted;
  // message_id is null when the quoted message is not one we have (older than the ticket).
  if (!isObject(quoted)) return null;
  return { message_id: typeof quoted.message_id === 'string' ? quoted.message_id : null, body: typeof quoted.body === 'string' ? quoted.body : '', type: typeof quoted.type === 'string' ? quoted.type : 'text' };
}

export type MediaKind = 'image' | 'sticker' | 'audio' | 'video' | 'document';

/** How to show an attachment: by the message's type first, then by the bytes' mime type. */
export function mediaKind(message: Message, media: MediaInfo): MediaKind {
  if (message.type === 'sticker') return 'sticker';
  if (message.type === 'document') return 'document';
  const [major] = media.mime.split('/');
  if (message.type === 'image' || message.type === 'audio' || message.type === 'video') {
    return major === message.type && media.mime !== 'image/svg+xml' ? message.type : 'document';
  }
  if (major === 'image' && media.mime !== 'image/svg+xml') return 'image';
  if (major === 'audio') return 'audio';
  if (major === 'video') return 'video';
  return 'document';
}

/** A map for the point, in a new tab (OpenStreetMap: no account, no key). */
export function mapUrl(location: LocationInfo): string {
  const lat = location.latitude.toFixed(6);
  const lon = location.longitude.toFixed(6);
  return `https://www.openstreetmap.org/?mlat=${lat}&mlon=${lon}#map=17/${lat}/${lon}`;
}

/** Just the digits of a vCard number ("+55 11 98765-4321" → "5511987654321"). */
export function phoneDigits(phone: string): string {
  return phone.replace(/\D/g, '');
}

/** A ticket's preview of a message without text is its type in brackets (backend
 * tickets/projection.py: "[image]"); shown in Portuguese. */
export function previewText(preview: string): string {
  const match = /^\[([a-z_]+)\]$/.exec(preview);
  if (!match) return preview;
  return `[${t.ticket.media[match[1]] ?? t.ticket.media.other}]`;
}

/** An agent's signed WhatsApp reply ("*Ana:*", a line break, the text: backend messages.service
 * `signed`) split into the name WhatsApp shows in bold and the text. The stored body is what the
 * client received; only its markup is rendered. */
export function splitSignature(body: string): { signature: string | null; text: string } {
  const match = /^\*([^*\n]+):\*\n/.exec(body);
  return match ? { signature: `${match[1]}:`, text: body.slice(match[0].length) } : { signature: null, text: body };
}
