import { useEffect, useRef, useState } from 'react';

/** WhatsApp's voice notes are OGG/Opus, and the backend sends an upload as a voice note when its
 * bytes are OGG/Opus (backend/messages/uploads.py). Firefox records that directly; Chromium's
 * MediaRecorder offers no OGG (checked in Chromium 156: audio/webm;codecs=opus only), so its WebM
 * recording is rewrapped into OGG: the same Opus packets, no re-encoding. */
export const VOICE_TYPES = ['audio/ogg;codecs=opus', 'audio/webm;codecs=opus'] as const;

/** The recording as OGG/Opus: as it is when it already is, else its Opus packets moved into an
 * OGG container (mediabunny, loaded only when a voice note is recorded). */
export async function toOggOpus(recording: Blob): Promise<Blob> {
  if (recording.type.startsWith('audio/ogg')) return recording;
  const { BlobSource, BufferTarget, Conversion, Input, OggOutputFormat, Output, WEBM } = await import('mediabunny');
  const input = new Input({ source: new BlobSource(recording), formats: [WEBM] });
  const target = new BufferTarget();
  const output = new Output({ format: new OggOutputFormat(), target });
  const conversion = await Conversion.init({ input, output });
  if (!conversion.isValid) throw new Error('recording cannot be rewrapped as OGG/Opus');
  await conversion.execute();
  if (!target.buffer) throw new Error('empty OGG output');
  return new Blob([target.buffer], { type: 'audio/ogg' });
}

export function pickRecordingType(supports: (type: string) => boolean = (type) => MediaRecorder.isTypeSupported(type)): string | null {
  return VOICE_TYPES.find((type) => supports(type)) ?? null;
}

export function recordingFileName(at: Date = new Date()): string {
  const stamp = at.toISOString().slice(0, 19).replace(/[-:]/g, '').replace('T', '-');
  return `mensagem-de-voz-${stamp}.ogg`;
}

export type RecorderState =
  | { phase: 'idle' }
  | { phase: 'encoding' }
  | { phase: 'recording'; startedAt: number }
  | { phase: 'error'; reason: 'denied' | 'unsupported' | 'encoding' };

/** Records from the microphone; `stop` hands the recording to `onDone` as a file, `cancel` drops it.
 * The microphone is released as soon as the recording ends (and if the component goes away). */
export function useVoiceRecorder(onDone: (file: File) => void, convert: (recording: Blob) => Promise<Blob> = toOggOpus) {
  const [state, setState] = useState<RecorderState>({ phase: 'idle' });
  const recorder = useRef<MediaRecorder | null>(null);
  const keep = useRef(false);
  const done = useRef(onDone);
  done.current = onDone;

  const release = () => {
    recorder.current?.stream.getTracks().forEach((track) => track.stop());
    recorder.current = null;
  };
  useEffect(
    () => () => {
      keep.current = false;
      if (recorder.current?.state === 'recording') recorder.current.stop();
      release();
    },
    [],
  );

  const start = async () => {
    const type = typeof MediaRecorder === 'undefined' || !navigator.mediaDevices ? null : pickRecordingType();
    if (!type) {
      setState({ phase: 'error', reason: 'unsupported' });
      return;
    }
    let stream: MediaStream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch {
      setState({ phase: 'error', reason: 'denied' });
      return;
    }
    const chunks: Blob[] = [];
    const rec = new MediaRecorder(stream, { mimeType: type });
    rec.ondataavailable = (event) => {
      if (event.data.size > 0) chunks.push(event.data);
    };
    rec.onstop = () => {
      release();
      if (!keep.current || chunks.length === 0) {
        setState({ phase: 'idle' });
        return;
      }
      setState({ phase: 'encoding' });
      convert(new Blob(chunks, { type: type.split(';')[0] })).then(
        (ogg) => {
          setState({ phase: 'idle' });
          done.current(new File([ogg], recordingFileName(), { type: 'audio/ogg' }));
        },
        () => setState({ phase: 'error', reason: 'encoding' }),
      );
    };
    recorder.current = rec;
    keep.current = false;
    rec.start(250);
    setState({ phase: 'recording', startedAt: Date.now() });
  };

  const finish = (save: boolean) => {
    keep.current = save;
    if (recorder.current?.state === 'recording') recorder.current.stop();
  };

  return { state, start, stop: () => finish(true), cancel: () => finish(false), reset: () => setState({ phase: 'idle' }) };
}
