import { Alert, Button, Text } from '@mantine/core';
import { Link } from 'react-router';
import { useConnections } from '../../api/queries';
import type { WhatsAppConnection } from '../../api/types';
import { useMe } from '../../auth/session';
import { t } from '../../i18n/pt-BR';

/** A WhatsApp connection the tenant uses (active) through which no client's message arrives now:
 * logged out on the phone, or waiting for its QR code to be read. The one home of that rule (the
 * owner's alert when a connection drops, features/alerts/alerts.ts, asks it too). */
export function isDisconnected(connection: Pick<WhatsAppConnection, 'active' | 'status'>): boolean {
  return connection.active && connection.status !== 'open';
}

function DisconnectedConnection({ connection }: { connection: WhatsAppConnection }) {
  const waitingQr = connection.status === 'connecting';
  return (
    <Alert color={waitingQr ? 'orange' : 'red'} p="xs" mb="xs" data-testid="disconnected-connection">
      <Text size="sm">
        {t.disconnected.lead} <strong>{connection.name}</strong> {waitingQr ? t.disconnected.connecting : t.disconnected.close}
      </Text>
      <Button component={Link} to="/revenda/whatsapp" size="compact-xs" color={waitingQr ? 'orange' : 'red'} mt={6}>
        {t.disconnected.connect}
      </Button>
    </Alert>
  );
}

/** The owner's warning above the inbox, one per disconnected connection, for as long as it lasts:
 * the list follows the `connection.status` events (realtime/cache.ts), so a reconnect removes it at
 * once. Nothing (and no request) for anyone else: an agent's replies there already say
 * `reply_blocked`, and the role is asked here and not only through `enabled`, since an agent's
 * screens may have the connections cached. */
export function DisconnectedConnections() {
  const owner = useMe().role === 'reseller';
  const connections = useConnections(owner).data;
  if (!owner || !connections) return null;
  return connections.filter(isDisconnected).map((c) => <DisconnectedConnection key={c.id} connection={c} />);
}
