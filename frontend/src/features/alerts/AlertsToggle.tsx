import { Stack, Switch, Text } from '@mantine/core';
import { useState } from 'react';
import { useMe } from '../../auth/session';
import { t } from '../../i18n/pt-BR';
import { alertsEnabled, setAlertsEnabled } from './alerts';
import { primeSound } from './sound';

/** The one place the browser's notification permission is asked for: the user's own click (an
 * agent's, or the owner's: conversations nobody serves, a WhatsApp connection down, its own tickets). */
export function AlertsToggle() {
  const me = useMe();
  const owner = me.role === 'reseller';
  const [on, setOn] = useState(() => alertsEnabled(me.id));
  const [problem, setProblem] = useState<string | null>(null);

  const change = async (next: boolean) => {
    setOn(next);
    setAlertsEnabled(me.id, next);
    setProblem(null);
    if (!next) return;
    primeSound(); // inside the click: browsers only start audio after a gesture
    if (typeof Notification === 'undefined') {
      setProblem(t.alerts.unsupported);
      return;
    }
    // Asked on every turn-on: answers at once when already decided, prompts only while undecided.
    const permission = await Notification.requestPermission();
    if (permission !== 'granted') setProblem(t.alerts.denied);
  };

  return (
    <Stack gap="xs">
      <Switch
        checked={on}
        onChange={(e) => void change(e.currentTarget.checked)}
        label={owner ? t.alerts.ownerToggle : t.alerts.toggle}
        description={owner ? t.alerts.ownerToggleHint : t.alerts.toggleHint}
        data-testid="alerts-toggle"
      />
      {problem && (
        <Text c="orange.8" size="sm" role="status">
          {problem}
        </Text>
      )}
    </Stack>
  );
}
