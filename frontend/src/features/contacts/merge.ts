import { api, unwrap } from '../../api/client';
import type { Client } from '../../api/types';

/** Merges the client `clientId` into `intoClientId` (the one kept), which the answer reads
 * (backend/clients/merge.py: its chats and history join the kept one from now on). */
export function mergeClient(clientId: string, intoClientId: string): Promise<Client> {
  return unwrap(
    api.POST('/api/v1/clients/{client_id}/merge', {
      params: { path: { client_id: clientId } },
      body: { into_client_id: intoClientId },
    }),
  );
}
