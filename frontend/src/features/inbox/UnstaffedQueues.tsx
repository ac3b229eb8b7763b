import { Alert, Anchor, Button, Group, Text } from '@mantine/core';
import { Link } from 'react-router';
import { useTicketCounts } from '../../api/queries';
import type { Department } from '../../api/types';
import { t } from '../../i18n/pt-BR';
import { useUnstaffedDepartments } from '../reseller/staffing';

/** One queue nobody serves, while conversations wait in it (its counts follow the realtime events). */
function UnstaffedQueue({ department, onShow }: { department: Department; onShow: (departmentId: string) => void }) {
  const waiting = useTicketCounts(department.id).data?.espera ?? 0;
  if (waiting === 0) return null;
  return (
    <Alert color="orange" p="xs" mb="xs" data-testid="unstaffed-queue">
      <Text size="sm">
        {t.staffing.nobodyServes} <strong>{department.name}</strong>: {t.staffing.waiting(waiting)}.
      </Text>
      <Group gap="sm" mt={6}>
        <Button size="compact-xs" color="orange" onClick={() => onShow(department.id)}>
          {t.staffing.showConversations}
        </Button>
        <Anchor component={Link} to="/revenda/agentes" size="xs">
          {t.staffing.addAgents}
        </Anchor>
      </Group>
    </Alert>
  );
}

/** The owner's warning above the inbox: conversations waiting where only the owner will ever see
 * them. Nothing for anyone else, nor while no such queue has a conversation waiting. */
export function UnstaffedQueues({ onShow }: { onShow: (departmentId: string) => void }) {
  return useUnstaffedDepartments().map((d) => <UnstaffedQueue key={d.id} department={d} onShow={onShow} />);
}
