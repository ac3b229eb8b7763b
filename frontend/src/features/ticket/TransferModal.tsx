import { Button, Group, Modal, SegmentedControl, Select, Stack } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { useMutation } from '@tanstack/react-query';
import { useState } from 'react';
import { api, unwrap } from '../../api/client';
import { useAgents, useDepartments, useTicketUpdated } from '../../api/queries';
import type { Ticket } from '../../api/types';
import { t } from '../../i18n/pt-BR';
import { isUnstaffed } from '../reseller/staffing';

type Target = 'agent' | 'department';

export function TransferModal({
  ticket,
  opened,
  onClose,
  onConflict,
}: {
  ticket: Ticket;
  opened: boolean;
  onClose: () => void;
  onConflict: (error: unknown) => void;
}) {
  const [chosenTarget, setTarget] = useState<Target>('agent');
  // A waiting ticket only moves between queues: handing it to an agent is assuming it.
  const onlyQueues = ticket.status === 'espera';
  const target: Target = onlyQueues ? 'department' : chosenTarget;
  const [choice, setChoice] = useState<string | null>(null);
  const agents = useAgents(opened);
  const departments = useDepartments(opened);
  const updated = useTicketUpdated();

  const agentOptions = (agents.data ?? [])
    .filter((a) => a.role === 'agent' && a.active && a.id !== ticket.agent_id)
    .map((a) => ({ value: a.id, label: a.name }));
  const departmentOptions = (departments.data ?? [])
    .filter((d) => d.active && !(onlyQueues && d.id === ticket.department_id))
    // A queue nobody serves is still offered, marked: what is sent there only the owner sees.
    .map((d) => ({ value: d.id, label: isUnstaffed(d) ? `${d.name}${t.staffing.optionSuffix}` : d.name }));

  const transfer = useMutation({
    mutationFn: () =>
      unwrap(
        api.POST('/api/v1/tickets/{ticket_id}/transfer', {
          params: { path: { ticket_id: ticket.id } },
          body: target === 'agent' ? { agent_id: choice } : { department_id: choice },
        }),
      ),
    onSuccess: (data) => {
      updated(data);
      notifications.show({ color: 'teal', message: t.ticket.transferred });
      setChoice(null);
      onClose();
    },
    onError: (error) => {
      onConflict(error);
      onClose();
    },
  });

  return (
    <Modal opened={opened} onClose={onClose} title={t.ticket.transferTitle}>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          if (choice) transfer.mutate();
        }}
      >
        <Stack>
          {!onlyQueues && (
            <SegmentedControl
              aria-label={t.ticket.transferTo}
              value={target}
              onChange={(v) => {
                setTarget(v as Target);
                setChoice(null);
              }}
              data={[
                { value: 'agent', label: t.ticket.toAgent },
                { value: 'department', label: t.ticket.toDepartment },
              ]}
            />
          )}
          <Select
            label={target === 'agent' ? t.ticket.chooseAgent : t.ticket.chooseDepartment}
            data={target === 'agent' ? agentOptions : departmentOptions}
            value={choice}
            onChange={setChoice}
            searchable
            required
          />
          <Group justify="flex-end">
            <Button variant="default" onClick={onClose}>
              {t.app.cancel}
            </Button>
            <Button type="submit" disabled={!choice} loading={transfer.isPending}>
              {t.ticket.transfer}
            </Button>
          </Group>
        </Stack>
      </form>
    </Modal>
  );
}
