import { MantineProvider, createTheme } from '@mantine/core';
import { ModalsProvider } from '@mantine/modals';
import { Notifications } from '@mantine/notifications';
import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { useState, type ReactNode } from 'react';
import { BrowserRouter } from 'react-router';
import { ApiError } from './api/client';
import { AuthProvider } from './auth/session';
import { t } from './i18n/pt-BR';
import { RealtimeProvider } from './realtime/RealtimeProvider';
import { AppRoutes } from './routes';

const theme = createTheme({ primaryColor: 'teal', defaultRadius: 'md' });

export function makeQueryClient(): QueryClient {
  return new QueryClient({
    defaultOptions: {
      queries: {
        // The websocket keeps the cache current; refetching on focus covers a sleeping laptop.
        staleTime: 30_000,
        retry: (count, error) => !(error instanceof ApiError && error.status >= 400 && error.status < 500) && count < 2,
      },
      mutations: { retry: false },
    },
  });
}

export function Providers({ children, client }: { children: ReactNode; client: QueryClient }) {
  return (
    <MantineProvider theme={theme}>
      <QueryClientProvider client={client}>
        <ModalsProvider labels={{ confirm: t.app.confirm, cancel: t.app.cancel }}>
          <Notifications position="bottom-right" />
          <AuthProvider>
            <RealtimeProvider>{children}</RealtimeProvider>
          </AuthProvider>
        </ModalsProvider>
      </QueryClientProvider>
    </MantineProvider>
  );
}

export function App() {
  const [client] = useState(makeQueryClient);
  return (
    <BrowserRouter>
      <Providers client={client}>
        <AppRoutes />
      </Providers>
    </BrowserRouter>
  );
}
