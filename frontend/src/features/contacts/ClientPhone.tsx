import { Text } from '@mantine/core';
import { t } from '../../i18n/pt-BR';
import { formatPhone } from '../../lib/format';

// A client WhatsApp names only by its privacy id (LID) has no number (`phone: ""`): it is shown
// as such, muted, never as an empty cell or a dangling " · ".

/** A client's phone, formatted; the muted "hidden by WhatsApp" label when it has none. */
export function ClientPhone({ phone }: { phone: string }) {
  if (phone) return <>{formatPhone(phone)}</>;
  return (
    <Text span inherit c="dimmed" fs="italic" data-testid="hidden-phone">
      {t.contacts.hiddenPhone}
    </Text>
  );
}

/** A client's name as text (a notification's title): the name, else the phone, else the label. */
export function clientLabel(name: string | null | undefined, phone: string): string {
  return name || formatPhone(phone) || t.contacts.hiddenPhone;
}
