import { Button, Stack, Text } from '@mantine/core';
import { Link } from 'react-router';
import { t } from '../i18n/pt-BR';

export function NotFound() {
  return (
    <Stack align="flex-start">
      <Text>{t.app.notFound}</Text>
      <Button component={Link} to="/" variant="light">
        {t.app.backHome}
      </Button>
    </Stack>
  );
}
