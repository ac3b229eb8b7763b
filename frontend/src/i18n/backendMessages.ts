// The backend's own sentences (error `detail`s, Pydantic's validation messages, a failed message's
// `failure_reason`) in Brazilian Portuguese: the one place the UI turns them into pt-BR.
//
// The backend answers in English, for developers and logs; the UI never shows that English.
// `backendMessages.test.ts` reads the backend's sources and fails when a sentence raised there has
// no entry here, so a new sentence in backend/ needs its translation in this file.
//
// Sentences built from a variable are not literals the test can read; where they go:
// - f-strings ("<what> not found", "a period spans at most {n} days", …): PATTERNS, by their fixed part;
// - Pydantic's own `msg` (request validation; messages/uploads.py passes one on as a sentence):
//   `pydanticMessage`, by its wording;
// - clients/service.py `Unprocessable(str(exc))` of normalize_phone: the schema's phone sentence;
// - the CSV import's `str(csv.Error)`: not translated, the generic fallback.
//
// This module holds its own texts and imports nothing from pt-BR.ts (pt-BR.ts imports
// `failureReason` from here; an import back would be a cycle).

/** Exact backend sentences. Keys are the backend's text, byte for byte. */
const SENTENCES: Record<string, string> = {
  // 400: a malformed upload
  'multipart/form-data with a boundary is expected': 'O envio do arquivo não pôde ser lido. Tente de novo.',
  'the multipart body is not readable': 'O envio do arquivo não pôde ser lido. Tente de novo.',
  'the upload ended before the form did': 'O envio do arquivo foi interrompido. Tente de novo.',

  // 401
  'invalid email or password': 'E-mail ou senha incorretos.',
  'invalid or expired token': 'Sua sessão expirou. Entre novamente.',
  'not authenticated': 'Entre novamente para continuar.',
  'invalid webhook credentials': 'Credenciais do webhook inválidas.',

  // A connection's `last_error`: the provider lost its instance (connections/service.py INSTANCE_MISSING)
  'instance not found at the provider: pair the phone again':
    'Este WhatsApp não existe mais no provedor (ele perdeu seus dados). Clique em “Conectar (QR Code)” e escaneie de novo com o celular.',

  // 403
  'role not allowed': 'Você não tem permissão para esta ação.',
  'resellers manage their agents only': 'Você só pode gerenciar os agentes da sua empresa.',
  'exports are for the reseller owner': 'Só o responsável pela empresa pode exportar.',
  "only the reseller edits the company's quick replies": 'Só o responsável pela empresa edita as respostas rápidas da empresa.',
  'only the person holding the ticket can reply': 'Só quem está com o atendimento pode responder.',
  "notes are written by the tenant's staff": 'Notas internas são escritas pela equipe da empresa.',
  "only its author, the ticket's holder or the reseller can cancel a scheduled message":
    'Só quem agendou a mensagem, quem está com o atendimento ou o responsável pela empresa pode cancelar o agendamento.',
  'only its author can edit a scheduled message': 'Só quem agendou a mensagem pode editá-la.',
  'agents see their own figures only': 'Agentes veem apenas os próprios números.',
  "only the reseller's owner deactivates or reactivates clients": 'Só o responsável pela empresa desativa ou reativa contatos.',
  "only the reseller's owner merges clients": 'Só o responsável pela empresa pode mesclar contatos.',

  // 404 (the "<thing> not found" family is below, in NOT_FOUND)
  'the message has no media': 'Esta mensagem não tem anexo.',
  'quoted message not found in this ticket': 'A mensagem citada não está neste atendimento.',
  'message not found in this ticket': 'A mensagem não está neste atendimento.',

  // 409
  'email already in use': 'Já existe um usuário com este e-mail.',
  'you cannot deactivate yourself': 'Você não pode desativar o seu próprio usuário.',
  "a reseller's owner cannot be deactivated alone; suspend the reseller instead":
    'O responsável pela empresa não pode ser desativado sozinho: para parar a empresa, suspenda a revenda.',
  'only agents belong to departments': 'Apenas agentes pertencem a departamentos.',
  'this message cannot be reacted to': 'Não é possível reagir a esta mensagem.',
  'only a message the connection sent can be deleted for everyone': 'Só mensagens enviadas pela conexão podem ser apagadas para todos.',
  'only a text message you sent can be edited': 'Só é possível editar uma mensagem de texto enviada por você.',
  'the message has not been sent yet; edit it once it is': 'A mensagem ainda não foi enviada: edite-a depois que ela sair.',
  'WhatsApp lets a message be edited only within 15 minutes of sending it': 'O WhatsApp só permite editar uma mensagem até 15 minutos depois do envio.',
  'instance name already in use': 'Já existe uma conexão com este nome de instância.',
  'a client with this phone already exists': 'Já existe um contato com este telefone.',
  'a department with this name already exists': 'Já existe um departamento com este nome.',
  'a quick reply with this shortcut already exists': 'Já existe uma resposta rápida com este atalho.',
  'assume the ticket before replying': 'Assuma o atendimento para responder.',
  'the client cannot be reached from this ticket':
    'Não é possível responder ao cliente por este atendimento: a conexão de WhatsApp dele está desativada, desconectada ou ausente. Use uma nota interna.',
  'the connection cannot send now': 'Esta conexão de WhatsApp não pode enviar agora (desativada ou desconectada). Escolha outra ou reconecte-a.',
  'ticket is held by another agent': 'Este atendimento está com outro agente.',
  'the ticket is no longer held by this person': 'O atendimento já não está com esta pessoa.',
  'the agent already holds this ticket': 'O atendimento já está com este agente.',
  'the ticket already waits in this department': 'O atendimento já está na espera deste departamento.',
  'only a finalized ticket can be reopened': 'Apenas um atendimento finalizado pode ser reaberto.',
  'ticket was reopened already': 'Este atendimento já foi reaberto.',
  'client already has an open ticket': 'Este cliente já tem um atendimento aberto.',
  // a contact merge (backend clients): the contact merged must have no open conversation, and can be merged once
  'the client has an open ticket': 'Este contato tem um atendimento aberto: finalize-o antes de mesclar.',
  'the client was merged into another': 'Este contato já foi mesclado em outro.',
  'the department menu is no longer pending': 'O cliente já não está no menu de departamentos.',
  'the ticket is rated already': 'Este atendimento já foi avaliado.',
  'only a failed media fetch can be retried': 'Apenas um anexo que falhou ao baixar pode ser baixado de novo.',
  'the media did not come from a provider': 'Este anexo não veio do WhatsApp: não há como baixá-lo de novo.',
  'the media is not stored yet': 'O anexo ainda está sendo baixado. Tente de novo em instantes.',
  'the scheduled message is no longer waiting': 'Esta mensagem agendada não está mais aguardando: ela já foi enviada, cancelada ou não pôde ser enviada.',
  // Races the backend lost this time ("; retry"): the same action a moment later succeeds.
  "the client's tickets are being finalized too fast; retry": 'Os atendimentos deste cliente estão mudando agora. Tente de novo em instantes.',
  'the message is being moved too fast; retry': 'A mensagem está sendo atualizada agora. Tente de novo em instantes.',
  'the ticket is receiving too many messages at once; retry': 'O atendimento está recebendo muitas mensagens agora. Tente de novo em instantes.',
  'the ticket is being marked read too often at once; retry': 'O atendimento está sendo atualizado agora. Tente de novo em instantes.',
  'could not allocate a ticket number; retry': 'Não foi possível numerar o atendimento. Tente de novo.',
  'could not open a ticket; retry': 'Não foi possível abrir o atendimento. Tente de novo.',
  "could not find the client's ticket; retry": 'Não foi possível localizar o atendimento do cliente. Tente de novo.',
  'ticket is changing too fast; retry': 'O atendimento está mudando agora. Tente de novo em instantes.',
  'the same message is scheduled too often at this time; retry': 'Esta mesma mensagem já foi agendada muitas vezes para este horário.',

  // 422: rules on well-formed values
  'current password is incorrect': 'Senha atual incorreta.',
  'reseller_id is required for the platform admin': 'Escolha uma revenda.',
  'a menu needs at least one department': 'Escolha ao menos um departamento para ligar o menu.',
  'unknown or inactive department': 'Departamento inexistente ou inativo: escolha um departamento ativo.',
  'department is inactive': 'Este departamento está inativo: escolha outro.',
  'unknown agent': 'Agente não encontrado.',
  'agent is inactive': 'Este agente está inativo: escolha outro.',
  'client is inactive': 'Este contato está inativo.',
  'the client has no phone number to write to': 'Este contato não tem telefone para receber mensagens.',
  'the phone of a client does not change': 'O telefone de um cliente não muda depois de definido.',
  'a client cannot be merged into itself': 'Escolha outro contato: um contato não pode ser mesclado nele mesmo.',
  'the target client was merged into another: merge into that one': 'O contato escolhido já foi mesclado em outro: escolha aquele em que ele foi mesclado.',
  'a rating is 1 to 5': 'A nota vai de 1 a 5.',
  'invalid cursor': 'A lista mudou enquanto era carregada. Recarregue a página.',
  'dates out of range': 'Data fora do intervalo aceito.',
  '`from` is after `to`': 'A data final deve ser igual ou posterior à inicial.',
  'opened_to_day is before opened_from_day': 'A data final deve ser igual ou posterior à inicial.',
  'a calendar day as YYYY-MM-DD': 'Informe a data no formato AAAA-MM-DD.',
  'reseller_id is required for the platform admin to filter by day': 'Escolha a revenda para filtrar por data.',
  '`to` is before `from`': 'A data final deve ser igual ou posterior à inicial.',
  'too many parts in the form': 'O formulário enviado tem partes demais.',
  'one file per message': 'Envie um arquivo por mensagem.',
  'the form has no file': 'Nenhum arquivo foi enviado.',
  'the file is empty': 'O arquivo está vazio.',
  // a scheduled message's time (backend/scheduled/service.py), read by the backend's clock
  'send_at must be at least 30 seconds from now': 'Escolha um horário pelo menos 30 segundos depois de agora.',
  'send_at must be within a year': 'Escolha um horário dentro de um ano a partir de agora.',
  // Pydantic `value_error`s of the request bodies (backend/*/schemas.py), "Value error, " cut off
  'a department appears twice': 'Um departamento aparece duas vezes.',
  'phone must have 8 to 15 digits': 'O telefone deve ter de 8 a 15 dígitos (com DDI e DDD).',
  'give exactly one of agent_id or department_id': 'Escolha um agente ou um departamento.',
  'weekday must be 0 (Monday) to 6 (Sunday)': 'Dia da semana inválido.',
  'a range must not open and close at the same time': 'A faixa não pode abrir e fechar no mesmo horário.',
  'unknown timezone (an IANA name such as America/Sao_Paulo)': 'Fuso horário desconhecido (use um nome como America/Sao_Paulo).',
  // the CSV import's line problems (backend/clients/service.py)
  'the header must name the columns nome and telefone': 'A primeira linha deve ter as colunas nome e telefone.',

  // 431
  'request headers are too large': 'A requisição foi recusada por ser grande demais. Recarregue a página e entre de novo.',

  // 429
  'too many failed logins; try again later': 'Muitas tentativas. Aguarde alguns minutos e tente de novo.',
  'too many exports running; try again in a minute': 'Muitas exportações em andamento. Tente de novo em instantes.',

  // 503
  'service not ready': 'O servidor está iniciando. Tente de novo em instantes.',
  'could not store the event; retry': 'Servidor indisponível no momento. Tente de novo em instantes.',
  'the database did not answer; retry': 'O servidor não respondeu a tempo. Tente de novo em instantes.',
};

/** `or_404(found, "<what>")` answers "<what> not found". */
const NOT_FOUND: Record<string, string> = {
  ticket: 'Atendimento não encontrado.',
  user: 'Usuário não encontrado.',
  connection: 'Conexão não encontrada.',
  department: 'Departamento não encontrado.',
  client: 'Contato não encontrado.',
  reseller: 'Revenda não encontrada.',
  config: 'Configuração da empresa não encontrada.',
  media: 'Anexo não encontrado.',
  message: 'Mensagem não encontrada.',
  'quick reply': 'Resposta rápida não encontrada.',
  'scheduled message': 'Mensagem agendada não encontrada.',
};

const ACTIONS: Record<string, string> = {
  assume: 'assumir',
  transfer_to_agent: 'transferir',
  transfer_to_department: 'transferir',
  finalize: 'finalizar',
  menu_choice: 'escolher o departamento de',
  rate: 'avaliar',
  release: 'devolver à fila',
};

const STATUSES: Record<string, string> = { espera: 'Espera', atendendo: 'Atendendo', finalizado: 'Finalizado' };

/** 1048576 → "1 MB". */
function bytes(n: number): string {
  if (n >= 1024 * 1024) return `${Math.round((n / (1024 * 1024)) * 10) / 10} MB`.replace('.', ',');
  if (n >= 1024) return `${Math.round(n / 1024)} KB`;
  return `${n} bytes`;
}

/** Sentences the backend builds with values in them (f-strings), each by its fixed part. */
const PATTERNS: [RegExp, (m: RegExpMatchArray) => string][] = [
  [/^(.+) not found$/, (m) => NOT_FOUND[m[1]] ?? 'Não encontrado.'],
  [/^role \S+ cannot \S+$/, () => 'Você não tem permissão para esta ação.'],
  [
    /^cannot (\w+) a ticket in (\w+)$/,
    (m) => `Não é possível ${ACTIONS[m[1]] ?? 'alterar'} este atendimento (situação: ${STATUSES[m[2]] ?? m[2]}).`,
  ],
  [/^a period (?:spans at most|of at most) (\d+) days$/, (m) => `O período pode ter no máximo ${m[1]} dias.`],
  [/^the file is larger than (\d+) bytes$/, (m) => `O arquivo passa do limite de ${bytes(Number(m[1]))}.`],
  [/^request body larger than \d+ bytes$/, () => 'Os dados enviados passam do tamanho aceito.'],
  [/^unknown form field /, () => 'O formulário enviado tem um campo desconhecido.'],
  [/^the field .+ is too long$/, () => 'Um campo do formulário passa do tamanho aceito.'],
  [/^the field .+ is not UTF-8$/, () => 'Um campo do formulário tem caracteres inválidos.'],
  [
    /^department is the default of connection\(s\): (.+); choose another default first$/,
    (m) => `Este departamento é o padrão de conexão de WhatsApp (${m[1]}): escolha outro departamento padrão em Conexões WhatsApp antes de desativá-lo.`,
  ],
  [/^provider unavailable: /, () => 'O provedor do WhatsApp está indisponível no momento. Tente de novo em instantes.'],
  [/ exists but is not visible yet/, () => 'Os dados ainda estão sendo gravados. Tente de novo em instantes.'],
  // An edit or a deletion for everyone that came before the message it changes ("; retry").
  [/^the message this \S+ changes is not stored yet/, () => 'A mensagem alterada ainda não chegou. Tente de novo em instantes.'],
  [/^at most (\d+) departments \(answered with one digit\)$/, (m) => `No máximo ${m[1]} departamentos (o cliente responde com um dígito).`],
  [/^at most (\d+) ranges$/, (m) => `No máximo ${m[1]} faixas de horário.`],
  [/^at most (\d+) closed dates$/, (m) => `No máximo ${m[1]} datas fechadas.`],
  [/^at most (\d+) lines per file$/, (m) => `No máximo ${m[1]} linhas por arquivo.`],
  [/^a ticket can have at most (\d+) scheduled messages waiting$/, (m) => `Um atendimento pode ter no máximo ${m[1]} mensagens agendadas aguardando.`],
  [/^the same phone is on line (\d+)$/, (m) => `O mesmo telefone já está na linha ${m[1]}.`],
];

// A few sentences the backend already writes in Portuguese (messages/uploads.py): those pass as
// they are. English sentences never hold these letters; quoted input only appears in PATTERNS.
const PORTUGUESE = /[ãõçáéíóúâêôà]/i;

/** pt-BR for a backend sentence (or a Pydantic message), or undefined when this file does not know it. */
export function translateBackendMessage(text: string): string | undefined {
  const sentence = text.trim().replace(/^Value error, /, '');
  const exact = SENTENCES[sentence];
  if (exact !== undefined) return exact;
  for (const [pattern, render] of PATTERNS) {
    const match = sentence.match(pattern);
    if (match) return render(match);
  }
  if (PORTUGUESE.test(sentence)) return sentence;
  return pydanticMessage(sentence);
}

// Patterns the request schemas declare, in words a user can act on (Pydantic only quotes the regex).
const PATTERN_HINTS: Record<string, string> = {
  '^[\\w\\-.]+$': 'Use apenas letras, números, ponto, hífen ou sublinhado, sem espaços.',
  '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$': 'Use até 64 letras sem acento, números, ponto, hífen ou sublinhado, começando por letra ou número.',
  '^([01]\\d|2[0-3]):[0-5]\\d$': 'Use o formato HH:MM (de 00:00 a 23:59).',
  '^[0-9a-f]{24}$': 'Identificador inválido.',
};

const INVALID = 'Valor inválido.';

/** Pydantic's English `msg`s, read by their wording: the backend sends `type`, `loc` and `msg`, not
 * `ctx`, so the numbers come from the text. Also for a `msg` the backend passes on as a sentence. */
function pydanticMessage(msg: string): string | undefined {
  let m: RegExpMatchArray | null;
  if (msg === 'Field required') return 'Preencha este campo.';
  if ((m = msg.match(/^String should have at least (\d+) characters?$/))) {
    return m[1] === '1' ? 'Preencha este campo.' : `Use ao menos ${m[1]} caracteres.`;
  }
  if ((m = msg.match(/^String should have at most (\d+) characters?$/))) return `Use no máximo ${m[1]} caracteres.`;
  if ((m = msg.match(/^String should match pattern '(.*)'$/))) return PATTERN_HINTS[m[1]] ?? 'Formato inválido.';
  if ((m = msg.match(/should have at least (\d+) items?/))) return m[1] === '1' ? 'Escolha ao menos um.' : `Escolha ao menos ${m[1]}.`;
  if ((m = msg.match(/should have at most (\d+) items?/))) return `No máximo ${m[1]} itens.`;
  if ((m = msg.match(/^Input should be greater than or equal to (\S+)$/))) return `Use um valor a partir de ${m[1]}.`;
  if ((m = msg.match(/^Input should be less than or equal to (\S+)$/))) return `Use um valor até ${m[1]}.`;
  if ((m = msg.match(/^Input should be greater than (\S+)$/))) return `Use um valor maior que ${m[1]}.`;
  if ((m = msg.match(/^Input should be less than (\S+)$/))) return `Use um valor menor que ${m[1]}.`;
  if (/^Input should be a valid integer/.test(msg)) return 'Informe um número inteiro.';
  if (/^Input should be a valid number/.test(msg)) return 'Informe um número.';
  if (/^Input should be a valid (date|datetime|time)/.test(msg)) return 'Data ou horário inválido.';
  if (/^Input should be a valid email|not a valid email address/i.test(msg)) return 'E-mail inválido.';
  if (/^Input should be a valid URL/.test(msg)) return 'Endereço inválido.';
  if (/^Input should be (a valid string|a valid boolean|a valid list|a valid dictionary|an object)/.test(msg)) return INVALID;
  if (/^Input should be '/.test(msg)) return 'Escolha uma das opções.';
  if (/^Extra inputs are not permitted$/.test(msg)) return 'Campo não aceito.';
  if (/^JSON decode error|^Invalid JSON/.test(msg)) return 'Os dados enviados não puderam ser lidos.';
  return undefined;
}

/** One item of a FastAPI 422 list (`{type, loc, msg}`, `ctx` when a backend sends it). */
export type ValidationIssue = { type?: string; loc?: unknown[]; msg?: string; ctx?: Record<string, unknown> };

/** A validation issue in pt-BR: by Pydantic's `type` (with `ctx` when present), else by its wording. */
export function validationIssueMessage(issue: ValidationIssue): string {
  const ctx = issue.ctx ?? {};
  const n = (key: string) => (ctx[key] === undefined ? undefined : String(ctx[key]));
  switch (issue.type) {
    case 'missing':
      return 'Preencha este campo.';
    case 'string_too_long':
      if (n('max_length')) return `Use no máximo ${n('max_length')} caracteres.`;
      break;
    case 'string_too_short':
      if (n('min_length')) return n('min_length') === '1' ? 'Preencha este campo.' : `Use ao menos ${n('min_length')} caracteres.`;
      break;
    case 'string_pattern_mismatch':
      if (n('pattern')) return PATTERN_HINTS[n('pattern')!] ?? 'Formato inválido.';
      break;
    case 'literal_error':
    case 'enum':
      return 'Escolha uma das opções.';
  }
  const msg = issue.msg ?? '';
  const known = translateBackendMessage(msg);
  if (known !== undefined) return known;
  if (issue.type === 'string_pattern_mismatch') return 'Formato inválido.';
  return INVALID;
}

// ——— why an outgoing message was not sent (Message.failure_reason) ———
// Written by backend/outbound/worker.py (`_fail`: str(the ProviderError)), backend/core/attempts.py
// (an attempt whose worker died), backend/outbound/service.py (the provider's own failed receipt)
// and backend/connections/providers/evolution.py (`_call`, `_send`).

const NOT_SENT = 'Não enviada: ';

const FAILURES: Record<string, string> = {
  'number is not on WhatsApp': 'Este número não tem WhatsApp.',
  'connection missing or inactive': `${NOT_SENT}a conexão de WhatsApp foi desativada ou removida.`,
  'connection not connected': `${NOT_SENT}a conexão de WhatsApp estava desconectada. Reconecte-a e envie de novo.`,
  'ticket has no client phone': `${NOT_SENT}o atendimento não tem o telefone do cliente.`,
  "the message's file is not in the media store": `${NOT_SENT}o arquivo anexado não foi encontrado no servidor.`,
  'EVOLUTION_BASE_URL is not configured': `${NOT_SENT}o provedor do WhatsApp não está configurado no servidor.`,
  'provider answered a body that is not JSON': `${NOT_SENT}o provedor do WhatsApp não confirmou o envio.`,
  'provider answered an unexpected JSON shape': `${NOT_SENT}o provedor do WhatsApp não confirmou o envio.`,
  'provider reported an error': `${NOT_SENT}o WhatsApp informou um erro no envio.`,
  "the message it changes is not WhatsApp's": `${NOT_SENT}a mensagem que ela altera não passou pelo WhatsApp.`,
  // An agent's edit (connections/providers/evolution.py edit_text): accepted, but not named back.
  "updateMessage answered without the edit's key": `${NOT_SENT}o provedor do WhatsApp não confirmou a edição.`,
};

const FAILURE_PATTERNS: [RegExp, (m: RegExpMatchArray) => string][] = [
  [/^provider timeout\b/, () => `${NOT_SENT}o provedor do WhatsApp não respondeu a tempo.`],
  [/^provider unreachable\b/, () => `${NOT_SENT}sem comunicação com o provedor do WhatsApp.`],
  [
    /^provider answered (\d{3})\b/,
    (m) => {
      const code = Number(m[1]);
      if (code >= 500) return `${NOT_SENT}o provedor do WhatsApp falhou (código ${code}).`;
      if (code === 408 || code === 429) return `${NOT_SENT}o provedor do WhatsApp estava sobrecarregado (código ${code}).`;
      if (code === 401 || code === 403) return `${NOT_SENT}o provedor do WhatsApp recusou o acesso (código ${code}); confira a configuração.`;
      return `${NOT_SENT}o WhatsApp recusou o envio (código ${code}).`;
    },
  ],
  // `send*` accepted the request but answered no message id: it may have gone out unconfirmed.
  [/^\w+ answered without key\.id$/, () => `${NOT_SENT}o provedor do WhatsApp não confirmou o envio.`],
  [/^attempt \d+ did not finish\b/, () => `${NOT_SENT}o envio foi interrompido.`],
];

const REASON_MAX = 80;

/** pt-BR for why a message failed. An unknown reason is shown cut short, before any JSON or HTML
 * a provider may have quoted in it. */
export function failureReason(reason: string): string {
  const text = reason.trim();
  const exact = FAILURES[text];
  if (exact !== undefined) return exact;
  for (const [pattern, render] of FAILURE_PATTERNS) {
    const match = text.match(pattern);
    if (match) return render(match);
  }
  let short = text.split(/[{<\n[]/)[0].trim().replace(/[:,;]$/, '').trim();
  if (!short) return `${NOT_SENT}erro do provedor do WhatsApp.`;
  if (short.length > REASON_MAX) short = `${short.slice(0, REASON_MAX - 1).trimEnd()}…`;
  return `${NOT_SENT}${short}`;
}
