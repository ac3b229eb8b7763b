import type { QuickReply } from '../../api/types';

export type TemplateValues = { cliente: string; agente: string; protocolo: string };

/** Fills {{cliente}}, {{agente}} and {{protocolo}} (any spacing, any case); other text stays as written. */
export function fillTemplate(text: string, values: TemplateValues): string {
  return text.replace(/\{\{\s*(cliente|agente|protocolo)\s*\}\}/gi, (_, name: string) => values[name.toLowerCase() as keyof TemplateValues]);
}

/** The "/word" being typed just before the caret, if any: where it starts and what follows the slash. */
export function slashToken(text: string, caret: number): { start: number; query: string } | null {
  const m = /(^|\s)\/([\p{L}\p{N}_\-.]*)$/u.exec(text.slice(0, caret));
  if (!m) return null;
  return { start: caret - m[2].length - 1, query: m[2] };
}

/** Replies whose shortcut starts with the query first, then those whose shortcut or text contains it. */
export function matchReplies(replies: QuickReply[], query: string): QuickReply[] {
  const q = query.toLocaleLowerCase('pt-BR');
  const active = replies.filter((r) => r.active);
  const starts = active.filter((r) => r.shortcut.toLocaleLowerCase('pt-BR').startsWith(q));
  const contains = active.filter(
    (r) => !starts.includes(r) && (r.shortcut.toLocaleLowerCase('pt-BR').includes(q) || r.text.toLocaleLowerCase('pt-BR').includes(q)),
  );
  return [...starts, ...contains].slice(0, 20);
}
