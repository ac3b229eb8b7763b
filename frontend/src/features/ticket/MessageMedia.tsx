import { Anchor, Button, Group, Loader, Modal, Paper, Stack, Text, UnstyledButton } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { createContext, useContext, useState } from 'react';
import { Link } from 'react-router';
import { api, errorMessage, unwrap } from '../../api/client';
import type { Message } from '../../api/types';
import { t } from '../../i18n/pt-BR';
import { formatClock, formatPhone, formatSize } from '../../lib/format';
import { applyMessage } from '../../realtime/cache';
import {
  contactsOf,
  locationOf,
  mapUrl,
  mediaKind,
  mediaOf,
  phoneDigits,
  splitSignature,
  type ContactCard,
  type LocationInfo,
  type MediaInfo,
  type QuotedInfo,
} from './media';
import { FileIcon } from './icons';
import { useDownload, useMediaUrl } from './useMedia';

/** A thread shown to someone who may not act on it (the platform admin reading a company's
 * conversations): its bubbles leave out what would write (asking the provider for a failed
 * attachment again) or lead to a screen that person has no access to (starting a conversation with
 * a shared contact). Reading stays: media is fetched and shown, documents can be downloaded. */
export const ReadOnlyThread = createContext(false);

/** What a message carries besides its text: an attachment, a location or contact cards. */
export function MessageContent({ message }: { message: Message }) {
  const media = mediaOf(message);
  const location = locationOf(message);
  const contacts = contactsOf(message);
  if (media) return <Attachment message={message} media={media} />;
  if (location) return <LocationCard location={location} />;
  if (contacts.length > 0) {
    return (
      <Stack gap={4}>
        {contacts.map((contact, index) => (
          <ContactCardView key={`${contact.name}-${index}`} contact={contact} />
        ))}
      </Stack>
    );
  }
  if (message.type === 'text' || message.type === 'chat') return null;
  if (message.type === 'call' || message.type === 'video_call') {
    return (
      <Text size="sm" data-testid="call-notice">
        {t.ticket.called(message.type === 'video_call')}
      </Text>
    );
  }
  return <MediaPlaceholder message={message} />;
}

/** A kind of message with nothing to show (a location without its point, a kind this app does not
 * show: named as such, so nobody takes it for an attachment that failed). */
function MediaPlaceholder({ message }: { message: Message }) {
  const label = message.type in t.ticket.media ? t.ticket.media[message.type] : t.ticket.unshownKind;
  return (
    <Text size="sm" fs="italic" data-testid="media-placeholder">
      [{label}]
    </Text>
  );
}

function Attachment({ message, media }: { message: Message; media: MediaInfo }) {
  if (media.status === 'pending') {
    return (
      <Group gap={6} data-testid="media-pending">
        <Loader size="xs" />
        <Text size="sm" c="dimmed">
          {t.media.loading}
        </Text>
      </Group>
    );
  }
  if (media.status === 'failed') return <FailedMedia message={message} media={media} />;
  const kind = mediaKind(message, media);
  if (kind === 'image' || kind === 'sticker') return <ImageMedia media={media} sticker={kind === 'sticker'} />;
  if (kind === 'audio') return <AudioMedia media={media} voice={media.voice} />;
  if (kind === 'video') return <VideoMedia media={media} />;
  return <DocumentCard media={media} />;
}

/** The provider never gave the bytes: say why and let anyone who sees the ticket ask again. */
function FailedMedia({ message, media }: { message: Message; media: MediaInfo }) {
  const readOnly = useContext(ReadOnlyThread);
  const client = useQueryClient();
  const retry = useMutation({
    mutationFn: () =>
      unwrap(api.POST('/api/v1/messages/{message_id}/media/retry', { params: { path: { message_id: message.id } } })),
    // Pending again: the thread shows "carregando…" and looks again until the bytes are in.
    onSuccess: (answer) => applyMessage(client, answer),
    onError: (error) => notifications.show({ color: 'red', message: errorMessage(error) }),
  });
  return (
    <Stack gap={4} data-testid="media-failed">
      <Text size="sm" c="red.8">
        {media.error || t.media.failed}
      </Text>
      {!readOnly && (
        <Button size="compact-sm" variant="light" w="fit-content" loading={retry.isPending} onClick={() => retry.mutate()}>
          {t.media.retry}
        </Button>
      )}
    </Stack>
  );
}

/** The object URL could not be fetched (network, or access lost): the same retry, client side. */
function FetchError({ error, onRetry }: { error: unknown; onRetry: () => void }) {
  return (
    <Group gap={6} data-testid="media-fetch-error">
      <Text size="sm" c="red.8">
        {errorMessage(error)}
      </Text>
      <Button size="compact-sm" variant="subtle" onClick={onRetry}>
        {t.media.retry}
      </Button>
    </Group>
  );
}

function Loading() {
  return (
    <Group gap={6}>
      <Loader size="xs" />
      <Text size="sm" c="dimmed">
        {t.media.loading}
      </Text>
    </Group>
  );
}

function ImageMedia({ media, sticker }: { media: MediaInfo; sticker: boolean }) {
  const { url, error, refetch } = useMediaUrl(media);
  const [open, setOpen] = useState(false);
  const label = sticker ? t.media.sticker : t.media.image;
  if (error) return <FetchError error={error} onRetry={() => void refetch()} />;
  if (!url) return <Loading />;
  const box = sticker ? 140 : 260;
  return (
    <>
      <UnstyledButton onClick={() => setOpen(true)} aria-label={t.media.enlarge} title={t.media.enlarge} display="block">
        <img
          src={url}
          alt={media.name || label}
          data-testid={sticker ? 'sticker' : 'image'}
          width={media.width ?? undefined}
          height={media.height ?? undefined}
          // A tiny image (a 1×1 tracking pixel, a small icon) still gets a box the click can hit.
          style={{
            display: 'block',
            maxWidth: box,
            maxHeight: box,
            minWidth: 48,
            minHeight: 48,
            width: 'auto',
            height: 'auto',
            objectFit: 'contain',
            borderRadius: sticker ? 0 : 6,
          }}
        />
      </UnstyledButton>
      <Modal
        opened={open}
        onClose={() => setOpen(false)}
        fullScreen
        title={media.name || label}
        closeButtonProps={{ 'aria-label': t.media.close }}
        transitionProps={{ duration: 0 }}
      >
        <img
          src={url}
          alt={media.name || label}
          data-testid="image-viewer"
          aria-label={t.media.viewer}
          style={{ display: 'block', margin: '0 auto', maxWidth: '100%', maxHeight: 'calc(100vh - 90px)', objectFit: 'contain' }}
        />
      </Modal>
    </>
  );
}

function AudioMedia({ media, voice }: { media: MediaInfo; voice: boolean }) {
  const { url, error, refetch } = useMediaUrl(media);
  // Recorded audio often has no duration in its header (the player says Infinity): the stored one wins.
  const [played, setPlayed] = useState<number | null>(null);
  const duration = media.duration ?? played;
  if (error) return <FetchError error={error} onRetry={() => void refetch()} />;
  if (!url) return <Loading />;
  return (
    <Stack gap={2}>
      <audio
        controls
        preload="metadata"
        src={url}
        data-testid="audio-player"
        aria-label={voice ? t.media.voice : t.media.audio}
        onLoadedMetadata={(e) => {
          const d = e.currentTarget.duration;
          if (Number.isFinite(d) && d > 0) setPlayed(d);
        }}
        style={{ width: 260, maxWidth: '100%' }}
      />
      {duration !== null && duration > 0 && (
        <Text size="xs" c="dimmed" data-testid="audio-duration">
          {t.media.duration(formatClock(duration))}
        </Text>
      )}
    </Stack>
  );
}

/** Videos can be large: fetched when the agent asks, then played in place. */
function VideoMedia({ media }: { media: MediaInfo }) {
  const [wanted, setWanted] = useState(false);
  const { url, isLoading, error, refetch } = useMediaUrl(media, wanted);
  if (error) return <FetchError error={error} onRetry={() => void refetch()} />;
  if (url) {
    return (
      <video
        controls
        autoPlay
        src={url}
        data-testid="video-player"
        aria-label={media.name || t.media.video}
        style={{ display: 'block', maxWidth: 320, maxHeight: 320, borderRadius: 6 }}
      />
    );
  }
  return (
    <Button variant="default" size="sm" loading={isLoading} onClick={() => setWanted(true)} data-testid="video-load">
      {t.media.playVideo}
      {media.duration ? ` · ${formatClock(media.duration)}` : ''}
      {media.size == null ? '' : ` · ${formatSize(media.size)}`}
    </Button>
  );
}

function DocumentCard({ media }: { media: MediaInfo }) {
  const download = useDownload();
  const save = useMutation({
    mutationFn: () => download(media),
    onError: (error) => notifications.show({ color: 'red', message: errorMessage(error) }),
  });
  const extension = media.name.includes('.') ? media.name.split('.').pop()?.toUpperCase() : null;
  return (
    <Paper withBorder p="xs" radius="sm" data-testid="document-card" style={{ background: 'var(--mantine-color-body)' }}>
      <Group gap="sm" wrap="nowrap" justify="space-between">
        <FileIcon />
        <Stack gap={0} style={{ minWidth: 0, flex: 1 }}>
          <Text size="sm" fw={600} lineClamp={1} title={media.name} data-testid="document-name">
            {media.name || t.media.document}
          </Text>
          <Text size="xs" c="dimmed" data-testid="document-size">
            {[extension, media.size == null ? null : formatSize(media.size)].filter(Boolean).join(' · ')}
          </Text>
        </Stack>
        <Button size="compact-sm" variant="light" loading={save.isPending} onClick={() => save.mutate()} aria-label={`${t.media.download} ${media.name}`}>
          {t.media.download}
        </Button>
      </Group>
    </Paper>
  );
}

function LocationCard({ location }: { location: LocationInfo }) {
  return (
    <Stack gap={2} data-testid="location">
      <Text size="sm" fw={600}>
        {location.name || t.media.location}
      </Text>
      {location.address && <Text size="xs">{location.address}</Text>}
      <Text size="xs" c="dimmed">
        {location.latitude.toFixed(6)}, {location.longitude.toFixed(6)}
      </Text>
      <Anchor href={mapUrl(location)} target="_blank" rel="noopener noreferrer" size="sm">
        {t.media.openMap}
      </Anchor>
    </Stack>
  );
}

/** A shared contact: its numbers, and a way to talk to it: the contacts page opens its
 * "Iniciar conversa" flow for the first number, creating the contact when there is none. */
function ContactCardView({ contact }: { contact: ContactCard }) {
  const readOnly = useContext(ReadOnlyThread);
  const first = contact.phones.map(phoneDigits).find((p) => p.length >= 8);
  const to = first ? `/contatos?${new URLSearchParams({ novo: first, nome: contact.name }).toString()}` : null;
  return (
    <Paper withBorder p="xs" radius="sm" data-testid="contact-card" style={{ background: 'var(--mantine-color-body)' }}>
      <Text size="sm" fw={600}>
        {contact.name || t.media.contact}
      </Text>
      {contact.phones.length === 0 && (
        <Text size="xs" c="dimmed">
          {t.media.noPhone}
        </Text>
      )}
      {contact.phones.map((phone) => (
        <Text size="xs" key={phone}>
          {formatPhone(phoneDigits(phone))}
        </Text>
      ))}
      {to && !readOnly && (
        <Button component={Link} to={to} size="compact-sm" variant="light" mt={4}>
          {t.media.startConversation}
        </Button>
      )}
    </Paper>
  );
}

function quoteText(quoted: QuotedInfo): string {
  // An agent's reply is stored signed ("*Ana:*" on its first line): its quote shows the words.
  if (quoted.body) return splitSignature(quoted.body).text;
  return quoted.type in t.ticket.media ? `[${t.ticket.media[quoted.type]}]` : t.media.quotedMissing;
}

/** The message a reply quotes, above it (WhatsApp's look: a bar and the quoted text). */
export function QuoteBlock({ quoted }: { quoted: QuotedInfo }) {
  return (
    <div
      data-testid="quote"
      aria-label={t.media.quoted}
      role="group"
      style={{ borderLeft: '3px solid var(--mantine-color-teal-6)', paddingLeft: 6, marginBottom: 4, background: 'rgba(0,0,0,0.04)', borderRadius: 4 }}
    >
      <Text size="xs" lineClamp={3} c="dimmed">
        {quoteText(quoted)}
      </Text>
    </div>
  );
}
