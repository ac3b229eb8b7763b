import { useEffect, useRef, useState } from 'react';

/** WhatsApp's voice notes are OGG/Opus. Firefox records that directly; Chromium's MediaRecorder
 * does not offer OGG and records Opus in WebM (the backend and Evolution's sendWhatsAppAudio take
 * either: the provider re-encodes to a voice note). */
export const VOICE_TYPES = ['audio/ogg;codecs=opus', 'audio/webm;codecs=opus', 'audio/webm'] as const;

export function pickRecordingType(supports: (type: string) => boolean = (type) => MediaRecorder.isTypeSupported(type)): string | null {
  return VOICE_TYPES.find((type) => supports(type)) ?? null;
}

export function recordingFileName(mime: string, at: Date = new Date()): string {
  const stamp = at.toISOString().slice(0, 19).replace(/[-:]/g, '').replace('T', '-');
  return `mensagem-de-voz-${stamp}.${mime.startsWith('audio/ogg') ? 'ogg' : 'webm'}`;
}

export type RecorderState =
  | { phase: 'idle' }
  | { phase: 'recording'; startedAt: number }
  | { phase: 'error'; reason: 'denied' | 'unsupported' };

/** Records from the microphone; `stop` hands the recording to `onDone` as a file, `cancel` drops it.
 * The microphone is released as soon as the recording ends (and if the component goes away). */
export function useVoiceRecorder(onDone: (file: File) => void) {
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
      setState({ phase: 'idle' });
      if (keep.current && chunks.length > 0) {
        // The container without its codec parameter: what a file's type looks like on upload.
        const mime = type.split(';')[0];
        done.current(new File(chunks, recordingFileName(mime), { type: mime }));
      }
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
