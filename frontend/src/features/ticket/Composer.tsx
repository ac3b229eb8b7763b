import { ActionIcon, Alert, Badge, Button, Checkbox, CloseButton, Combobox, FileButton, Group, Paper, Progress, SegmentedControl, Stack, Text, Textarea, useCombobox } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useEffect, useRef, useState, type ClipboardEvent, type DragEvent, type FormEvent, type KeyboardEvent } from 'react';
import { ApiError, api, errorMessage, postForm, unwrap } from '../../api/client';
import { useQuickReplies } from '../../api/queries';
import type { Message, Ticket } from '../../api/types';
import { useMe } from '../../auth/session';
import { t } from '../../i18n/pt-BR';
import { formatClock, formatPhone, formatSize } from '../../lib/format';
import { applyMessage, keys } from '../../realtime/cache';
import { QuoteBlock } from './MessageMedia';
import { fillTemplate, matchReplies, slashToken } from './quickReplies';
import { useNow } from '../../lib/useNow';
import { ClockIcon, FileIcon, MicIcon, PaperclipIcon } from './icons';
import { useVoiceRecorder } from './voice';
import { useDraft } from './drafts';
import { ScheduleMessageModal } from './ScheduleMessageModal';
import { useMounted } from '../../lib/useMounted';

function hint(ticket: Ticket): string {
  if (ticket.status === 'finalizado') return t.ticket.readOnly;
  if (ticket.status === 'atendendo' && ticket.agent_name) return t.ticket.heldByOther(ticket.agent_name);
  return t.ticket.assumeToReply;
}

type Mode = 'reply' | 'note';
type Sending = { text: string; as: Mode; file: File | null; quotedId: string | null; voice?: boolean; sticker?: boolean };

/** A reply's `Idempotency-Key`: random, from `getRandomValues` (which, unlike `randomUUID`, plain
 * HTTP pages have too). */
export function newReplyKey(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('');
}

function sameSending(a: Sending, b: Sending): boolean {
  return a.text === b.text && a.as === b.as && a.file === b.file && a.quotedId === b.quotedId && !!a.sticker === !!b.sticker;
}

/** The box once `sent` is answered: what the agent went on writing after it (typed on while it was
 * on its way, the sent words still in front) stays; the sent words go. */
export function afterSent(current: string, sent: string): string {
  const text = current.trimStart();
  if (!text.startsWith(sent)) return current;
  return text.slice(sent.length).trimStart();
}

/** A WebP may go as a WhatsApp sticker, at the agent's choice (the backend checks the rest). */
export function mayBeSticker(file: File): boolean {
  return file.type === 'image/webp' || file.name.toLowerCase().endsWith('.webp');
}

/** The chosen file before it is sent: a thumbnail for images, its name and size otherwise; for a
 * WebP, the choice to send it as a sticker. */
function AttachmentPreview({
  file,
  onRemove,
  sticker,
  onSticker,
}: {
  file: File;
  onRemove: () => void;
  sticker: boolean;
  onSticker: (sticker: boolean) => void;
}) {
  const [thumb, setThumb] = useState<string | null>(null);
  useEffect(() => {
    if (!file.type.startsWith('image/')) return undefined;
    const url = URL.createObjectURL(file);
    setThumb(url);
    return () => {
      URL.revokeObjectURL(url);
      setThumb(null);
    };
  }, [file]);
  return (
    <Paper withBorder p={6} radius="sm" data-testid="attachment-preview">
      <Group gap="xs" wrap="nowrap">
        {thumb ? (
          <img src={thumb} alt={file.name} style={{ width: 56, height: 56, objectFit: 'cover', borderRadius: 4 }} />
        ) : (
          <FileIcon size={32} />
        )}
        <Stack gap={0} style={{ flex: 1, minWidth: 0 }}>
          <Text size="sm" fw={600} lineClamp={1}>
            {file.name}
          </Text>
          <Text size="xs" c="dimmed">
            {formatSize(file.size)}
          </Text>
          {mayBeSticker(file) && (
            <Checkbox
              size="xs"
              mt={4}
              label={t.media.asSticker}
              description={sticker ? t.media.stickerNoCaption : undefined}
              checked={sticker}
              onChange={(event) => onSticker(event.currentTarget.checked)}
              data-testid="as-sticker"
            />
          )}
        </Stack>
        <CloseButton aria-label={t.media.removeAttachment} onClick={onRemove} />
      </Group>
    </Paper>
  );
}

function quoteAuthor(message: Message): string {
  if (message.direction === 'in') return message.sender_name || t.media.client;
  return message.sender_name || t.media.you;
}

/** Replies go to the client (only the holding agent); internal notes stay with the staff who can
 * see the ticket, in any status. Typing "/" in a reply opens the quick replies. */
export function Composer({
  ticket,
  canReply: mayReply,
  canNote,
  quoting = null,
  onQuoteDone,
  rewrite = null,
}: {
  ticket: Ticket;
  canReply: boolean;
  canNote: boolean;
  /** The message this reply answers, chosen with "Responder" in the thread. */
  quoting?: Message | null;
  onQuoteDone?: () => void;
  /** A reply that failed, chosen with "Escrever de novo": its text comes back into the box, to be
   * sent as a new reply (the failed one stays, failed, as it was). A new object each time. */
  rewrite?: { text: string } | null;
}) {
  const me = useMe();
  // What was typed here and not sent, back from an earlier visit (drafts.ts).
  const draft = useDraft(me.id, ticket.id);
  const [body, setBody] = useState(() => draft.restored?.text ?? '');
  const [chosen, setChosen] = useState<Mode>(() => draft.restored?.mode ?? 'reply');
  // The holder may answer, but nothing reaches the client (no connection, or it is off): replying
  // is disabled with the reason, so no message ever shows as sent that never left.
  const blocked = mayReply && ticket.reply_blocked ? ticket.reply_blocked : null;
  const canReply = mayReply && !blocked;
  // A restored draft's mode only where it is still allowed: its text is kept either way.
  const mode: Mode = canReply && (chosen === 'reply' || !canNote) ? 'reply' : 'note';
  const note = mode === 'note';
  // Stored as shown: text written as a note must never come back as a reply. Only the agent's own
  // changes are written (text, or the mode picked), not a change of what the agent may do.
  const written = useRef({ body, chosen });
  const { save: saveDraft, forgetKey } = draft;
  useEffect(() => {
    if (written.current.body === body && written.current.chosen === chosen) return;
    written.current = { body, chosen };
    saveDraft(body, mode);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [body, chosen, saveDraft]);
  const [caret, setCaret] = useState(0);
  // "Agendar mensagem": the composer's text when it was opened, offered as the scheduled message.
  const [scheduling, setScheduling] = useState<{ text: string } | null>(null);
  // Taken, finalized or blocked meanwhile: the modal closes for good, not to reopen by itself later.
  useEffect(() => {
    if (!canReply) setScheduling(null);
  }, [canReply]);
  // The "/" token the agent closed with Escape: the list stays closed until another one is typed.
  const [dismissedAt, setDismissedAt] = useState<number | null>(null);
  const area = useRef<HTMLTextAreaElement>(null);
  const pendingCaret = useRef<number | null>(null);
  useEffect(() => {
    if (!rewrite) return;
    // A new reply: never the failed attempt's key (its repeat would answer the failed message).
    attempted.current = null;
    forgetKey();
    setChosen('reply');
    setBody(rewrite.text);
    area.current?.focus();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [rewrite]);
  const client = useQueryClient();
  const replies = useQuickReplies(canReply);
  const combobox = useCombobox();
  const [file, setFile] = useState<File | null>(null);
  const [asSticker, setAsSticker] = useState(false);
  const [dragging, setDragging] = useState(false);
  // Upload progress 0..1 while a file goes up; the error of the last attachment, shown in place.
  const [progress, setProgress] = useState<number | null>(null);
  const [attachError, setAttachError] = useState<string | null>(null);
  const mounted = useMounted();
  // The last reply or note attempted and its key: sent again unchanged (its answer never came, or
  // failed), it carries the same key, so the backend stores (and sends) it once however often it is tried.
  const attempted = useRef<{ sending: Sending; key: string } | null>(
    // A send whose answer never came before a reload: sent again unchanged, it keeps its key.
    draft.restored?.key
      ? { sending: { text: draft.restored.text.trim(), as: draft.restored.mode, file: null, quotedId: null }, key: draft.restored.key }
      : null,
  );
  useEffect(() => {
    // Other words now: whatever is sent next is a new message, whatever the earlier send became.
    if (attempted.current && attempted.current.sending.text !== body.trim()) attempted.current = null;
  }, [body]);
  const keyFor = (sending: Sending): string => {
    if (attempted.current && sameSending(attempted.current.sending, sending)) return attempted.current.key;
    attempted.current = { sending, key: newReplyKey() };
    return attempted.current.key;
  };
  const send = useMutation({
    mutationFn: (sending: Sending) => {
      const { text, as, file: attached, quotedId, sticker } = sending;
      const params = { path: { ticket_id: ticket.id } };
      const headers = { 'Idempotency-Key': keyFor(sending) };
      if (as === 'note') {
        return unwrap(api.POST('/api/v1/tickets/{ticket_id}/notes', { params: { ...params, header: headers }, body: { body: text } }));
      }
      if (attached) {
        const form = new FormData();
        form.append('file', attached, attached.name);
        if (text) form.append('body', text);
        if (quotedId) form.append('quoted_message_id', quotedId);
        if (sticker) form.append('as_sticker', 'true');
        setProgress(0);
        return postForm<Message>(`/api/v1/tickets/${ticket.id}/messages`, form, setProgress, undefined, headers);
      }
      const payload = quotedId ? { body: text, quoted_message_id: quotedId } : { body: text };
      return unwrap(api.POST('/api/v1/tickets/{ticket_id}/messages', { params: { ...params, header: headers }, body: payload }));
    },
    onSuccess: (message, sent) => {
      const { as, voice } = sent;
      setProgress(null);
      // Answered: the same text sent again from now on is a new reply (the kept copy is the first
      // attempt's, not `sent`, when it was tried more than once).
      if (attempted.current && sameSending(attempted.current.sending, sent)) attempted.current = null;
      if (!voice) {
        // A voice note goes on its own: whatever was being written or attached stays. So does what
        // the agent wrote, attached or quoted here while this one was on its way.
        draft.discard(sent.text);
        if (sent.file) setFile((current) => (current === sent.file ? null : current));
        setAsSticker(false);
        setBody((current) => afterSent(current, sent.text));
      }
      if (as === 'reply' && (quoting?.id ?? null) === sent.quotedId) onQuoteDone?.();
      // Shown at once; the websocket's copy of it is applied by id, so it stays one. The worker may
      // have sent it (or failed it) before this answer arrived, its status frame first: this copy,
      // still "pending", never moves a status shown back (applyMessage, realtime/delivery.ts).
      applyMessage(client, message);
      if (as === 'reply') void client.invalidateQueries({ queryKey: ['tickets', 'list'] });
    },
    onError: (error, sent) => {
      const { file: attached, voice } = sent;
      setProgress(null);
      if (!attached && attempted.current && sameSending(attempted.current.sending, sent)) {
        draft.remember(sent.text, sent.as, attempted.current.key);
      }
      // Refused for the ticket's state (taken by someone else, finalized meanwhile): read it as it
      // is now, so the composer says why and the buttons are the ones that apply.
      if (error instanceof ApiError && error.status === 409) {
        void client.invalidateQueries({ queryKey: keys.ticket(ticket.id), exact: true });
        void client.invalidateQueries({ queryKey: keys.tickets });
      }
      // A voice note that did not go comes back as the attachment, to send again (the same file,
      // so the same key: one note however often it is tried) — never to be recorded again.
      if (voice && attached) setFile((current) => current ?? attached);
      // An attachment's refusal (too large: 413, a type WhatsApp does not take) stays beside it,
      // while this composer is on screen; the agent may have opened another ticket meanwhile.
      if (attached && mounted.current) setAttachError(errorMessage(error));
      else notifications.show({ color: 'red', message: attached ? t.media.attachmentFailed(ticket.number, errorMessage(error)) : errorMessage(error) });
    },
  });
  const recorder = useVoiceRecorder((voice) => {
    setAttachError(null);
    send.mutate({ text: '', as: 'reply', file: voice, quotedId: quoting?.id ?? null, voice: true });
  });
  const recording = recorder.state.phase === 'recording' || recorder.state.phase === 'encoding';
  const now = useNow(recording ? 500 : 60_000);
  const attach = (chosen: File | null) => {
    if (!chosen) return;
    if (!canReply) {
      notifications.show({ color: 'orange', message: t.media.notesNoAttachment });
      return;
    }
    setChosen('reply');
    setAttachError(null);
    setAsSticker(false);
    setFile(chosen);
  };

  const token = note ? null : slashToken(body, caret);
  const matches = token ? matchReplies(replies.data ?? [], token.query) : [];
  const open = !!token && token.start !== dismissedAt && (replies.data?.length ?? 0) > 0;

  useEffect(() => {
    if (open) {
      combobox.openDropdown();
      combobox.selectFirstOption();
    } else combobox.closeDropdown();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [open, token?.query, matches.length]);

  useEffect(() => {
    // Puts the caret after an inserted reply once React has rendered the new text.
    if (pendingCaret.current !== null && area.current) {
      area.current.focus();
      area.current.setSelectionRange(pendingCaret.current, pendingCaret.current);
      pendingCaret.current = null;
    }
  }, [body]);

  const blockedHint = blocked ? (
    <Alert color="orange" p="xs" data-testid="reply-blocked" role="status">
      {t.ticket.replyBlocked[blocked] ?? blocked}
    </Alert>
  ) : null;

  if (!canReply && !canNote) {
    if (blockedHint) return <Stack p="sm">{blockedHint}</Stack>;
    return (
      <Text size="sm" c="dimmed" p="sm" style={{ borderTop: '1px solid var(--mantine-color-gray-3)' }} data-testid="composer-hint">
        {hint(ticket)}
      </Text>
    );
  }

  const insert = (replyId: string) => {
    const reply = replies.data?.find((r) => r.id === replyId);
    if (!reply || !token) return;
    const text = fillTemplate(reply.text, {
      cliente: ticket.client_name || formatPhone(ticket.client_phone),
      agente: me.name,
      protocolo: String(ticket.number),
    });
    const next = body.slice(0, token.start) + text + body.slice(caret);
    pendingCaret.current = token.start + text.length;
    setCaret(token.start + text.length);
    setBody(next);
    combobox.closeDropdown();
  };

  const submit = (event?: FormEvent) => {
    event?.preventDefault();
    const text = body.trim();
    if (send.isPending || (!text && !file)) return;
    const attached = note ? null : file;
    if (note && !text) return;
    send.mutate({ text, as: mode, file: attached, quotedId: note ? null : quoting?.id ?? null, sticker: !!attached && asSticker });
  };
  const onPaste = (event: ClipboardEvent<HTMLTextAreaElement>) => {
    const image = Array.from(event.clipboardData.files).find((f) => f.type.startsWith('image/'));
    if (image && canReply) {
      event.preventDefault();
      attach(image);
    }
  };
  const hasFiles = (event: DragEvent) => Array.from(event.dataTransfer.types).includes('Files');
  const onDragOver = (event: DragEvent<HTMLFormElement>) => {
    if (!canReply || !hasFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = 'copy';
    if (!dragging) setDragging(true);
  };
  const onDragLeave = (event: DragEvent<HTMLFormElement>) => {
    if (!event.currentTarget.contains(event.relatedTarget as Node | null)) setDragging(false);
  };
  const onDrop = (event: DragEvent<HTMLFormElement>) => {
    setDragging(false);
    if (!canReply) return;
    const dropped = event.dataTransfer.files[0];
    if (dropped) {
      event.preventDefault();
      attach(dropped);
    }
  };
  const onKeyDown = (event: KeyboardEvent<HTMLTextAreaElement>) => {
    if (event.key === 'Escape' && open) {
      setDismissedAt(token?.start ?? null);
      return;
    }
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) submit();
  };
  const track = (el: HTMLTextAreaElement) => setCaret(el.selectionStart ?? el.value.length);
  // The text went into a schedule, as sending it would have: the box and its draft let it go,
  // unless the agent wrote something else here meanwhile.
  const scheduled = () => {
    const offered = scheduling?.text.trim() ?? '';
    if (!offered) return;
    draft.discard(offered);
    if (body.trim() === offered) setBody('');
  };

  return (
    <>
      <form
        onSubmit={submit}
        onDragOver={onDragOver}
        onDragLeave={onDragLeave}
        onDrop={onDrop}
        data-testid="composer"
        style={{ borderTop: '1px solid var(--mantine-color-gray-3)', position: 'relative' }}
      >
        {dragging && (
          <Text
            data-testid="drop-zone"
            fw={600}
            c="teal.8"
            style={{
              position: 'absolute',
              inset: 0,
              display: 'flex',
              alignItems: 'center',
              justifyContent: 'center',
              background: 'rgba(230, 252, 245, 0.92)',
              border: '2px dashed var(--mantine-color-teal-6)',
              zIndex: 2,
              pointerEvents: 'none',
            }}
          >
            {t.media.dropHere}
          </Text>
        )}
        <Stack gap={6} p="sm">
          {blockedHint}
          {!canReply && !blocked && (
            <Text size="sm" c="dimmed" data-testid="composer-hint">
              {hint(ticket)}
            </Text>
          )}
          {canReply && canNote && (
            <SegmentedControl
              size="xs"
              w="fit-content"
              aria-label={t.ticket.composerMode}
              value={mode}
              onChange={(value) => setChosen(value as Mode)}
              data={[
                { value: 'reply', label: t.ticket.modeReply },
                { value: 'note', label: t.ticket.modeNote },
              ]}
            />
          )}
          {!note && quoting && (
            <Group gap="xs" wrap="nowrap" align="flex-start" data-testid="composer-quote">
              <Stack gap={0} style={{ flex: 1, minWidth: 0 }}>
                <Text size="xs" fw={600}>
                  {t.media.replyTo(quoteAuthor(quoting))}
                </Text>
                <QuoteBlock quoted={{ message_id: quoting.id, body: quoting.body, type: quoting.type }} />
              </Stack>
              <CloseButton size="sm" aria-label={t.media.cancelReply} onClick={onQuoteDone} />
            </Group>
          )}
          {!note && file && (
            <AttachmentPreview
              file={file}
              onRemove={() => { setFile(null); setAsSticker(false); setAttachError(null); }}
              sticker={asSticker}
              onSticker={setAsSticker}
            />
          )}
          {progress !== null && (
            <Stack gap={2} data-testid="upload-progress">
              <Progress value={Math.round(progress * 100)} size="sm" aria-label={t.media.uploading(Math.round(progress * 100))} />
              <Text size="xs" c="dimmed">
                {t.media.uploading(Math.round(progress * 100))}
              </Text>
            </Stack>
          )}
          {attachError && (
            <Alert color="red" role="alert" data-testid="attach-error" withCloseButton onClose={() => setAttachError(null)} closeButtonLabel={t.media.close}>
              {attachError}
            </Alert>
          )}
          {recorder.state.phase === 'error' && (
            <Alert color="orange" role="alert" withCloseButton onClose={recorder.reset} closeButtonLabel={t.media.close}>
              {recorder.state.reason === 'denied'
                ? t.media.micDenied
                : recorder.state.reason === 'encoding'
                  ? t.media.encodingFailed
                  : t.media.recordUnsupported}
            </Alert>
          )}
          {recorder.state.phase === 'encoding' && (
            <Text size="sm" c="dimmed" data-testid="encoding">
              {t.media.encoding}
            </Text>
          )}
          {recorder.state.phase === 'recording' && (
            <Group gap="xs" data-testid="recording">
              <Text size="sm" c="red.7" fw={600}>
                ● {t.media.recording(formatClock((now.getTime() - recorder.state.startedAt) / 1000))}
              </Text>
              <Button size="compact-sm" color="red" onClick={recorder.stop}>
                {t.media.stopRecording}
              </Button>
              <Button size="compact-sm" variant="default" onClick={recorder.cancel}>
                {t.media.cancelRecording}
              </Button>
            </Group>
          )}
          {draft.restored && body === draft.restored.text && (
            <Text size="xs" c="dimmed" data-testid="draft-restored">
              {t.ticket.draftRestored}
            </Text>
          )}
          <Group align="flex-end" wrap="nowrap" gap="xs">
            {!note && canReply && (
              <FileButton onChange={attach}>
                {(props) => (
                  <ActionIcon {...props} variant="default" size={36} aria-label={t.media.attach} title={t.media.attach} disabled={send.isPending || recording}>
                    <PaperclipIcon />
                  </ActionIcon>
                )}
              </FileButton>
            )}
            <Combobox store={combobox} onOptionSubmit={insert} position="top-start" width="target" transitionProps={{ duration: 0 }}>
              <Combobox.Target>
                <Textarea
                  ref={area}
                  aria-label={note ? t.ticket.note : t.ticket.composer}
                  placeholder={note ? t.ticket.notePlaceholder : file ? t.media.caption : t.ticket.composerPlaceholder}
                  autosize
                  minRows={1}
                  maxRows={6}
                  maxLength={4096}
                  value={body}
                  onChange={(e) => {
                    setBody(e.currentTarget.value);
                    track(e.currentTarget);
                  }}
                  onSelect={(e) => track(e.currentTarget)}
                  onKeyDown={onKeyDown}
                  onPaste={onPaste}
                  style={{ flex: 1 }}
                  styles={note ? { input: { background: 'var(--mantine-color-yellow-0)' } } : undefined}
                />
              </Combobox.Target>
              <Combobox.Dropdown aria-label={t.quickReplies.picker} data-testid="quick-reply-picker">
                <Combobox.Options mah={240} style={{ overflowY: 'auto' }}>
                  {matches.length === 0 && <Combobox.Empty>{t.quickReplies.noMatch}</Combobox.Empty>}
                  {matches.map((reply) => (
                    <Combobox.Option value={reply.id} key={reply.id} data-testid="quick-reply-option">
                      <Group gap="xs" wrap="nowrap">
                        <Text size="sm" fw={600}>
                          /{reply.shortcut}
                        </Text>
                        {reply.scope === 'personal' && (
                          <Badge size="xs" variant="light">
                            {t.quickReplies.personal}
                          </Badge>
                        )}
                      </Group>
                      <Text size="xs" opacity={0.8} lineClamp={2}>
                        {reply.text}
                      </Text>
                    </Combobox.Option>
                  ))}
                </Combobox.Options>
              </Combobox.Dropdown>
            </Combobox>
            {!note && canReply && !file && !body.trim() && !recording && (
              <ActionIcon
                variant="default"
                size={36}
                aria-label={t.media.record}
                title={t.media.record}
                onClick={() => void recorder.start()}
                disabled={send.isPending}
                data-testid="record-voice"
              >
                <MicIcon />
              </ActionIcon>
            )}
            {!note && canReply && (
              <ActionIcon
                variant="default"
                size={36}
                aria-label={t.ticket.schedule.open}
                title={t.ticket.schedule.open}
                onClick={() => setScheduling({ text: body })}
                disabled={send.isPending || recording}
                data-testid="schedule-message"
              >
                <ClockIcon />
              </ActionIcon>
            )}
            <Button type="submit" color={note ? 'yellow.8' : undefined} loading={send.isPending} disabled={note || !file ? !body.trim() : false}>
              {note ? t.ticket.saveNote : t.ticket.send}
            </Button>
          </Group>
        </Stack>
      </form>
      {/* Beside the form, not in it: React events bubble through portals, and the modal's submit
          must never reach the composer's (which would send the text now). */}
      <ScheduleMessageModal
        ticketId={ticket.id}
        opened={scheduling !== null && canReply}
        initialText={scheduling?.text.trim() ?? ''}
        onClose={() => setScheduling(null)}
        onScheduled={scheduled}
      />
    </>
  );
}
