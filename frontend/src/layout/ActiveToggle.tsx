import { Button } from '@mantine/core';

import { t } from '../i18n/pt-BR';

/** The Desativar / Reativar action of an admin table row (nothing is ever deleted). */
export function ActiveToggle({
  active,
  onDeactivate,
  onReactivate,
}: {
  active: boolean;
  onDeactivate: () => void;
  onReactivate: () => void;
}) {
  return active ? (
    <Button size="compact-sm" variant="subtle" color="red" onClick={onDeactivate}>
      {t.app.deactivate}
    </Button>
  ) : (
    <Button size="compact-sm" variant="subtle" onClick={onReactivate}>
      {t.app.reactivate}
    </Button>
  );
}
