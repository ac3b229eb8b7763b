import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ApiError, fieldErrors } from '../api/client';
import { failureReason, translateBackendMessage, validationIssueMessage } from './backendMessages';

// The repository's backend/, from this file (frontend/src/i18n/).
const BACKEND = resolve(dirname(fileURLToPath(import.meta.url)), '../../../backend');

function pythonFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    if (entry.name === '__pycache__' || entry.name.startsWith('.')) return [];
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return pythonFiles(path);
    return entry.name.endsWith('.py') ? [path] : [];
  });
}

const ERRORS = '(?:BadRequest|Unauthorized|Forbidden|NotFound|Conflict|Unprocessable|TooManyRequests|ServiceUnavailable|NotYetVisible|TooLarge)';
const STRING = '(f?)"((?:[^"\\\\\\n]|\\\\.)*)"';

type Sentence = { text: string; dynamic: boolean; where: string };

/** The sentences backend/ can send to the UI, read from its sources:
 * - the literal (or f-string) first argument of a domain error, or its dict's "message";
 * - a constant (NAME = "…") passed as that argument or to unique_or_conflict();
 * - or_404(found, "<what>") → "<what> not found";
 * - a ticket move's refusal (`unless=lambda …: None if … else "…"`);
 * - a `{"detail": "…"}` answered directly, or an HTTPException's `detail or "…"`;
 * - ValueError("…") raised in a request schema (Pydantic's value_error, a field's message);
 * - the CSV import's line messages (`message="…"`, `message = "…"`).
 * Sentences passed as a variable built elsewhere (str(exc), Pydantic's own msg) are not literals:
 * the Pydantic ones are translated by their wording, anything else falls back to a generic text. */
function backendSentences(): Sentence[] {
  const found: Sentence[] = [];
  for (const file of pythonFiles(BACKEND)) {
    const source = readFileSync(file, 'utf8');
    const where = relative(BACKEND, file);
    const add = (f: string, text: string) => found.push({ text: text.replace(/\\(.)/g, '$1'), dynamic: f === 'f', where });
    const constants = new Map<string, [string, string]>();
    for (const m of source.matchAll(new RegExp(`^([A-Z][A-Z0-9_]*)\\s*=\\s*\\(?\\s*${STRING}`, 'gm'))) constants.set(m[1], [m[2], m[3]]);
    const patterns = [
      new RegExp(`\\b${ERRORS}\\(\\s*${STRING}`, 'g'),
      new RegExp(`\\b${ERRORS}\\(\\s*\\{\\s*"message":\\s*${STRING}`, 'g'),
      new RegExp(`unless=lambda[^\\n]*?\\belse\\s+${STRING}`, 'g'),
      new RegExp(`\\{"detail":\\s*${STRING}`, 'g'),
      new RegExp(`\\bdetail or ${STRING}`, 'g'),
      new RegExp(`\\bmessage\\s*=\\s*${STRING}`, 'g'),
      ...(file.endsWith('schemas.py') ? [new RegExp(`raise ValueError\\(\\s*${STRING}`, 'g')] : []),
    ];
    for (const pattern of patterns) for (const m of source.matchAll(pattern)) add(m[1], m[2]);
    for (const m of source.matchAll(new RegExp(`(?:\\b${ERRORS}|unique_or_conflict)\\(\\s*([A-Z][A-Z0-9_]*)\\b`, 'g'))) {
      const constant = constants.get(m[1]);
      if (!constant) throw new Error(`${where}: ${m[1]} is not a string constant of this file; teach this test where it comes from`);
      add(...constant);
    }
    for (const m of source.matchAll(/\bor_404\([^,()]+,\s*"([^"]+)"\)/g)) add('', `${m[1]} not found`);
  }
  return found;
}

/** An f-string with a sample value (a number: counts, sizes, status codes) in each placeholder. */
const filled = (text: string) => text.replace(/\{[^{}]*\}/g, '400');

/** What a sentence's translation must recognise. */
function sample(sentence: Sentence): string {
  return sentence.dynamic ? filled(sentence.text) : sentence.text;
}

describe('the backend sentences in pt-BR', () => {
  const sentences = backendSentences();

  it('finds the backend sentences (the extraction still reads the sources)', () => {
    const texts = sentences.map((s) => s.text);
    expect(sentences.length).toBeGreaterThan(80);
    expect(texts).toEqual(expect.arrayContaining([
      'the ticket already waits in this department', // Conflict({"message": …})
      'a department with this name already exists', // a constant, through unique_or_conflict
      'invalid email or password', // a constant passed to Unauthorized
      'unknown or inactive department', // Unprocessable("…")
      'department not found', // or_404
      'the ticket is rated already', // a refusal of a ticket move
      'phone must have 8 to 15 digits', // a schema's ValueError
      'service not ready', // a {"detail": …} answered by the middleware
    ]));
  });

  it('has a translation for every sentence the backend raises', () => {
    const missing = sentences.filter((s) => translateBackendMessage(sample(s)) === undefined).map((s) => `${s.where}: ${s.text}`);
    expect([...new Set(missing)]).toEqual([]);
  });

  it('translates known sentences, in a string or in a dict with "message"', () => {
    expect(new ApiError(409, { message: 'the ticket already waits in this department', status: 'espera' }).message).toBe(
      'O atendimento já está na espera deste departamento.',
    );
    expect(new ApiError(409, 'a department with this name already exists').message).toBe('Já existe um departamento com este nome.');
    expect(new ApiError(422, 'department is inactive').message).toBe('Este departamento está inativo: escolha outro.');
    expect(new ApiError(422, 'a period spans at most 400 days').message).toBe('O período pode ter no máximo 400 dias.');
    expect(new ApiError(404, 'connection not found').message).toBe('Conexão não encontrada.');
    expect(new ApiError(409, { message: 'cannot assume a ticket in finalizado', status: 'finalizado' }).message).toBe(
      'Não é possível assumir este atendimento (situação: Finalizado).',
    );
    expect(new ApiError(413, 'the file is larger than 16777216 bytes').message).toBe('O arquivo passa do limite de 16 MB.');
  });

  it('lets through the sentences the backend already writes in Portuguese', () => {
    const text = 'WhatsApp não envia legenda com áudio; envie o texto numa mensagem separada.';
    expect(new ApiError(422, text).message).toBe(text);
  });

  it('never shows an unknown English sentence: a generic pt-BR text, the original kept in detail', () => {
    const error = new ApiError(409, { message: 'something new went wrong', status: 'espera' });
    expect(error.message).toBe('Conflito: os dados mudaram. Atualize e tente de novo.');
    expect(error.detail).toEqual({ message: 'something new went wrong', status: 'espera' });
    expect(new ApiError(422, 'something new went wrong').message).toBe('Não foi possível concluir a ação.');
    expect(new ApiError(400, 'something new went wrong').message).toBe('Não foi possível concluir a ação.');
    expect(new ApiError(403, 'something new').message).toBe('Você não tem permissão para esta ação.');
  });
});

describe('Pydantic validation issues', () => {
  const issue = (type: string, field: string, msg: string) => ({ type, loc: ['body', field], msg });

  it('translates the common ones by type and wording', () => {
    expect(validationIssueMessage(issue('string_too_long', 'name', 'String should have at most 100 characters'))).toBe('Use no máximo 100 caracteres.');
    expect(validationIssueMessage(issue('string_too_short', 'name', 'String should have at least 1 character'))).toBe('Preencha este campo.');
    expect(validationIssueMessage(issue('string_too_short', 'password', 'String should have at least 8 characters'))).toBe('Use ao menos 8 caracteres.');
    expect(validationIssueMessage(issue('missing', 'name', 'Field required'))).toBe('Preencha este campo.');
    expect(validationIssueMessage(issue('string_pattern_mismatch', 'shortcut', "String should match pattern '^[\\w\\-.]+$'"))).toBe(
      'Use apenas letras, números, ponto, hífen ou sublinhado, sem espaços.',
    );
    expect(validationIssueMessage(issue('string_pattern_mismatch', 'x', "String should match pattern '^a+$'"))).toBe('Formato inválido.');
    expect(validationIssueMessage(issue('value_error', 'phone', 'Value error, phone must have 8 to 15 digits'))).toBe(
      'O telefone deve ter de 8 a 15 dígitos (com DDI e DDD).',
    );
    expect(validationIssueMessage(issue('value_error', 'phone', 'Value error, something unheard of'))).toBe('Valor inválido.');
    expect(validationIssueMessage(issue('less_than_equal', 'hours', 'Input should be less than or equal to 72'))).toBe('Use um valor até 72.');
    expect(validationIssueMessage({ type: 'string_too_long', msg: '', ctx: { max_length: 32 } })).toBe('Use no máximo 32 caracteres.');
  });

  it('a Pydantic message passed on as a sentence is translated too', () => {
    expect(new ApiError(422, "String should match pattern '^[\\w\\-.]+$'").message).toBe(
      'Use apenas letras, números, ponto, hífen ou sublinhado, sem espaços.',
    );
  });

  it('field errors are in pt-BR, and only for fields of the body', () => {
    const error = new ApiError(422, [
      issue('string_too_long', 'name', 'String should have at most 100 characters'),
      { type: 'string_pattern_mismatch', loc: ['query', 'department_id'], msg: "String should match pattern '^[0-9a-f]{24}$'" },
      { type: 'value_error', loc: ['body'], msg: 'Value error, give exactly one of agent_id or department_id' },
    ]);
    expect(fieldErrors(error)).toEqual({ name: 'Use no máximo 100 caracteres.' });
  });

  it('a 422 with nothing to highlight says what is wrong instead of "Confira os campos destacados."', () => {
    const error = new ApiError(422, [{ type: 'value_error', loc: ['body'], msg: 'Value error, give exactly one of agent_id or department_id' }]);
    expect(fieldErrors(error)).toEqual({});
    expect(error.message).toBe('Escolha um agente ou um departamento.');
    const nested = new ApiError(422, [{ type: 'value_error', loc: ['body', 'hours', 0], msg: 'Value error, a range must not open and close at the same time' }]);
    expect(fieldErrors(nested)).toEqual({});
    expect(nested.message).toBe('A faixa não pode abrir e fechar no mesmo horário.');
  });
});

describe('why a message was not sent', () => {
  it('names the known reasons in pt-BR, never the provider JSON', () => {
    expect(failureReason('number is not on WhatsApp')).toBe('Este número não tem WhatsApp.');
    const refused = failureReason('provider answered 400: {"status":400,"error":"Bad Request","response":{"message":["x"]}}');
    expect(refused).toBe('Não enviada: o WhatsApp recusou o envio (código 400).');
    expect(failureReason('provider answered 502: <html>Bad Gateway</html>')).toBe('Não enviada: o provedor do WhatsApp falhou (código 502).');
    expect(failureReason('provider timeout: ReadTimeout')).toBe('Não enviada: o provedor do WhatsApp não respondeu a tempo.');
    expect(failureReason('provider unreachable: ConnectError: [Errno 111] Connection refused')).toBe(
      'Não enviada: sem comunicação com o provedor do WhatsApp.',
    );
    expect(failureReason('EVOLUTION_BASE_URL is not configured')).toBe('Não enviada: o provedor do WhatsApp não está configurado no servidor.');
    expect(failureReason('connection missing or inactive')).toBe('Não enviada: a conexão de WhatsApp foi desativada ou removida.');
    expect(failureReason('sendText answered without key.id')).toBe('Não enviada: o provedor do WhatsApp não confirmou o envio.');
    expect(failureReason('attempt 5 did not finish (worker died?)')).toBe('Não enviada: o envio foi interrompido.');
  });

  it('keeps an unknown reason short, without the JSON it quotes', () => {
    expect(failureReason('weird failure: {"a": 1}')).toBe('Não enviada: weird failure');
    const long = failureReason('x'.repeat(500));
    expect(long.length).toBeLessThanOrEqual('Não enviada: '.length + 80);
    expect(long.endsWith('…')).toBe(true);
    expect(failureReason('{"only":"json"}')).toBe('Não enviada: erro do provedor do WhatsApp.');
  });

  it('has a pt-BR reason for every reason the outbound worker and the provider write', () => {
    const files = ['outbound/worker.py', 'outbound/service.py', 'core/attempts.py', 'connections/providers/evolution.py', 'connections/providers/base.py'];
    const reasons: string[] = [];
    for (const file of files) {
      const source = readFileSync(join(BACKEND, file), 'utf8');
      for (const m of source.matchAll(/ProviderError\(\s*(f?)"((?:[^"\\\n]|\\.)*)"/g)) reasons.push(m[1] ? filled(m[2]) : m[2]);
      for (const m of source.matchAll(/\bfail\(\s*f?"((?:[^"\\\n]|\\.)*)"/g)) reasons.push(filled(m[1]));
      for (const m of source.matchAll(/"failure_reason":\s*reason or "([^"]+)"/g)) reasons.push(m[1]);
      for (const m of source.matchAll(/^NOT_ON_WHATSAPP = "([^"]+)"/gm)) reasons.push(m[1]);
    }
    // getBase64FromMediaMessage… and connectionState… are media-fetch and status errors, not sends.
    const sends = reasons.filter((r) => !/^(getBase64FromMediaMessage|connectionState)/.test(r));
    expect(sends).toEqual(expect.arrayContaining(['number is not on WhatsApp', 'EVOLUTION_BASE_URL is not configured']));
    const untranslated = sends.filter((r) => failureReason(r) === `Não enviada: ${r}`);
    expect(untranslated).toEqual([]);
  });
});
