import { Button, Group, Modal, PasswordInput, Stack, Text } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { useMutation } from '@tanstack/react-query';
import { useState } from 'react';
import { api, errorMessage, fieldErrors, unwrap } from '../api/client';
import { t } from '../i18n/pt-BR';

/** "Redefinir senha" for a user one manages (the reseller its agents, the admin resellers' owners):
 * the new password ends that user's open sessions. */
export function PasswordReset({ userId, name }: { userId: string; name: string }) {
  const [opened, setOpened] = useState(false);
  const [password, setPassword] = useState('');
  const close = () => {
    setOpened(false);
    setPassword('');
  };
  const reset = useMutation({
    mutationFn: () => unwrap(api.PATCH('/api/v1/users/{user_id}', { params: { path: { user_id: userId } }, body: { password } })),
    onSuccess: () => {
      notifications.show({ color: 'teal', message: t.passwordReset.done });
      close();
    },
  });
  const errors = fieldErrors(reset.error);
  return (
    <>
      <Button size="compact-sm" variant="default" onClick={() => setOpened(true)}>
        {t.passwordReset.action}
      </Button>
      <Modal opened={opened} onClose={close} title={t.passwordReset.title(name)}>
        <form
          onSubmit={(e) => {
            e.preventDefault();
            reset.mutate();
          }}
        >
          <Stack>
            <PasswordInput label={t.passwordReset.password} required value={password} onChange={(e) => setPassword(e.currentTarget.value)} error={errors.password} autoComplete="new-password" data-autofocus />
            {reset.isError && !Object.keys(errors).length && (
              <Text c="red" size="sm" role="alert">
                {errorMessage(reset.error)}
              </Text>
            )}
            <Group justify="flex-end">
              <Button variant="default" onClick={close}>
                {t.app.cancel}
              </Button>
              <Button type="submit" loading={reset.isPending} disabled={password.length < 8}>
                {t.passwordReset.action}
              </Button>
            </Group>
          </Stack>
        </form>
      </Modal>
    </>
  );
}
