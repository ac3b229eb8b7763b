import { Button, Paper, PasswordInput, Stack, Text, TextInput, Title } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { useMutation } from '@tanstack/react-query';
import { useState } from 'react';
import { ApiError, api, errorMessage, fieldErrors, unwrap } from '../../api/client';
import { useAuth, useMe } from '../../auth/session';
import { t } from '../../i18n/pt-BR';
import { PageHeader } from '../../layout/PageHeader';
import { AlertsToggle } from '../alerts/AlertsToggle';

function NameForm() {
  const me = useMe();
  const { updateSession } = useAuth();
  const [name, setName] = useState(me.name);
  const save = useMutation({
    mutationFn: () => unwrap(api.PATCH('/api/v1/auth/me', { body: { name } })),
    onSuccess: (user) => {
      updateSession({ user });
      notifications.show({ color: 'teal', message: t.profile.nameSaved });
    },
  });
  const errors = fieldErrors(save.error);
  return (
    <form
      onSubmit={(e) => {
        e.preventDefault();
        save.mutate();
      }}
    >
      <Stack>
        <TextInput label={t.profile.name} required maxLength={120} value={name} onChange={(e) => setName(e.currentTarget.value)} error={errors.name} />
        {save.isError && !Object.keys(errors).length && (
          <Text c="red" size="sm" role="alert">
            {errorMessage(save.error)}
          </Text>
        )}
        <Button type="submit" loading={save.isPending} disabled={!name.trim() || name.trim() === me.name} style={{ alignSelf: 'flex-start' }}>
          {t.profile.saveName}
        </Button>
      </Stack>
    </form>
  );
}

function PasswordForm() {
  const { updateSession } = useAuth();
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const [again, setAgain] = useState('');
  const change = useMutation({
    mutationFn: () => unwrap(api.POST('/api/v1/auth/me/password', { body: { current_password: current, new_password: next } })),
    onSuccess: (body) => {
      // The change ended every session of the old password, this one's included: keep the fresh token.
      updateSession({ token: body.access_token, user: body.user, expiresAt: Date.now() + body.expires_in * 1000 });
      setCurrent('');
      setNext('');
      setAgain('');
      notifications.show({ color: 'teal', message: t.profile.changed });
    },
  });
  const errors = fieldErrors(change.error);
  // A 422 with a sentence (not field issues) is the rule refusing the current password.
  const wrongCurrent = change.error instanceof ApiError && change.error.status === 422 && typeof change.error.detail === 'string';
  const mismatch = again.length > 0 && again !== next;
  return (
    <form
      onSubmit={(e) => {
        e.preventDefault();
        if (!mismatch) change.mutate();
      }}
    >
      <Stack>
        <PasswordInput label={t.profile.current} required value={current} onChange={(e) => setCurrent(e.currentTarget.value)} error={errors.current_password} autoComplete="current-password" />
        <PasswordInput label={t.profile.next} required value={next} onChange={(e) => setNext(e.currentTarget.value)} error={errors.new_password} autoComplete="new-password" />
        <PasswordInput label={t.profile.confirm} required value={again} onChange={(e) => setAgain(e.currentTarget.value)} error={mismatch ? t.profile.mismatch : undefined} autoComplete="new-password" />
        {change.isError && !Object.keys(errors).length && (
          <Text c="red" size="sm" role="alert">
            {wrongCurrent ? t.profile.wrongCurrent : errorMessage(change.error)}
          </Text>
        )}
        <Button type="submit" loading={change.isPending} disabled={!current || next.length < 8 || next !== again} style={{ alignSelf: 'flex-start' }}>
          {t.profile.change}
        </Button>
      </Stack>
    </form>
  );
}

export function ProfilePage() {
  const me = useMe();
  return (
    <>
      <PageHeader title={t.profile.title} />
      <Stack maw={480}>
        <Paper withBorder p="md">
          <NameForm />
        </Paper>
        <Paper withBorder p="md">
          <Title order={3} size="h5" mb="sm">
            {t.profile.passwordTitle}
          </Title>
          <PasswordForm />
        </Paper>
        {(me.role === 'agent' || me.role === 'reseller') && (
          <Paper withBorder p="md">
            <Title order={3} size="h5" mb="sm">
              {t.alerts.title}
            </Title>
            <AlertsToggle />
          </Paper>
        )}
      </Stack>
    </>
  );
}
