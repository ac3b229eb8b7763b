/** A short two-tone chime made with the Web Audio API: no sound file to ship. Browsers let a page
 * start audio only after a user gesture, so the alerts toggle calls `primeSound` from its click. */
let context: AudioContext | null = null;

function audio(): AudioContext | null {
  if (typeof AudioContext === 'undefined') return null;
  context ??= new AudioContext();
  return context;
}

export function primeSound(): void {
  void audio()?.resume();
}

export function playChime(): void {
  const ctx = audio();
  if (!ctx) return;
  try {
    const now = ctx.currentTime;
    const gain = ctx.createGain();
    gain.gain.setValueAtTime(0.0001, now);
    gain.gain.exponentialRampToValueAtTime(0.25, now + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, now + 0.45);
    gain.connect(ctx.destination);
    const tone = ctx.createOscillator();
    tone.type = 'sine';
    tone.frequency.setValueAtTime(880, now);
    tone.frequency.setValueAtTime(1175, now + 0.15);
    tone.connect(gain);
    tone.start(now);
    tone.stop(now + 0.5);
  } catch {
    // No audio device (a server, a locked-down browser): the notification and the title remain.
  }
}
