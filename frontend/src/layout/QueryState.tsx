import { Alert, Center, Loader } from '@mantine/core';
import { errorMessage } from '../api/client';
import { t } from '../i18n/pt-BR';

/** Loading spinner or error alert for a query; renders nothing once data is there. */
export function QueryState({ query }: { query: { isPending: boolean; isError: boolean; error: unknown } }) {
  if (query.isPending) {
    return (
      <Center p="md">
        <Loader size="sm" aria-label={t.app.loading} />
      </Center>
    );
  }
  if (query.isError) {
    return (
      <Alert color="red" role="alert">
        {errorMessage(query.error)}
      </Alert>
    );
  }
  return null;
}
