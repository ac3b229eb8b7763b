import { AppShell, Badge, Burger, Button, Group, NavLink as MantineNavLink, Stack, Text, Title } from '@mantine/core';
import { useDisclosure } from '@mantine/hooks';
import { NavLink, Outlet, useLocation } from 'react-router';
import { useEffect } from 'react';
import { useAuth, useMe } from '../auth/session';
import { t } from '../i18n/pt-BR';
import { useRealtimeStatus } from '../realtime/RealtimeProvider';

type Item = { to: string; label: string };

function itemsFor(role: string): Item[] {
  const profile = { to: '/perfil', label: t.nav.profile };
  const reports = { to: '/relatorios', label: t.nav.reports };
  if (role === 'admin')
    return [
      { to: '/admin/revendas', label: t.nav.resellers },
      { to: '/admin/visao-geral', label: t.nav.overview },
      { to: '/admin/conversas', label: t.nav.conversations },
      reports,
      profile,
    ];
  const items: Item[] = [
    { to: '/atendimento', label: t.nav.inbox },
    { to: '/contatos', label: t.nav.contacts },
    { to: '/respostas', label: t.nav.quickReplies },
    { to: '/agendamentos', label: t.nav.scheduled },
  ];
  if (role === 'reseller') {
    items.push(
      { to: '/revenda/departamentos', label: t.nav.departments },
      { to: '/revenda/agentes', label: t.nav.agents },
      { to: '/revenda/whatsapp', label: t.nav.connections },
      { to: '/revenda/empresa', label: t.nav.company },
    );
  }
  items.push(reports, profile);
  return items;
}

function LiveBadge() {
  const status = useRealtimeStatus();
  if (status === 'open') return <Badge color="teal" variant="dot">{t.realtime.online}</Badge>;
  if (status === 'connecting') return <Badge color="gray" variant="dot">{t.realtime.connecting}</Badge>;
  return (
    <Badge color="orange" variant="dot" title={t.realtime.offline}>
      {t.realtime.connecting}
    </Badge>
  );
}

export function Shell() {
  const me = useMe();
  const { logout } = useAuth();
  const [opened, { toggle, close }] = useDisclosure();
  const location = useLocation();
  useEffect(close, [location.pathname, close]);

  return (
    <AppShell header={{ height: 60 }} navbar={{ width: 220, breakpoint: 'sm', collapsed: { mobile: !opened } }} padding="md">
      <a className="skip-link" href="#main">
        {t.app.skipToContent}
      </a>
      <AppShell.Header>
        <Group h="100%" px="md" justify="space-between" wrap="nowrap">
          <Group gap="sm" wrap="nowrap">
            <Burger opened={opened} onClick={toggle} hiddenFrom="sm" size="sm" aria-label={t.app.openMenu} />
            <Title order={1} size="h4">
              {t.app.name}
            </Title>
            {me.role !== 'admin' && <LiveBadge />}
          </Group>
          <Group gap="sm" wrap="nowrap">
            <Text size="sm" visibleFrom="sm" truncate maw={240}>
              {me.name} · {t.roles[me.role] ?? me.role}
            </Text>
            <Button variant="subtle" size="compact-sm" onClick={logout}>
              {t.auth.logout}
            </Button>
          </Group>
        </Group>
      </AppShell.Header>
      <AppShell.Navbar p="xs" aria-label="Menu">
        <Stack gap={2} component="nav">
          {itemsFor(me.role).map((item) => (
            <MantineNavLink
              key={item.to}
              component={NavLink}
              to={item.to}
              label={item.label}
              active={location.pathname.startsWith(item.to)}
            />
          ))}
        </Stack>
      </AppShell.Navbar>
      <AppShell.Main id="main" tabIndex={-1}>
        <Outlet />
      </AppShell.Main>
    </AppShell>
  );
}
