import '@testing-library/jest-dom/vitest';
import { notifications } from '@mantine/notifications';
import { configure } from '@testing-library/dom';
import { cleanup } from '@testing-library/react';
import { afterEach, vi } from 'vitest';

// findBy*/waitFor give up after asyncUtilTimeout (1 s by default). On CI's loaded 2-core machine a
// first render (Mantine, React Query, the router) alone can take longer, and MessageThread, LoginPage
// and TicketView tests failed there while asserting nothing about time. Waits still end as soon as
// their condition holds; this only moves the point where a wait is declared a failure, kept under
// the per-test budget (testTimeout in vitest.config.ts) so a failing wait reports its own message.
configure({ asyncUtilTimeout: 15_000 });

// jsdom lacks these browser APIs that Mantine uses.
Object.defineProperty(window, 'matchMedia', {
  writable: true,
  value: (query: string) => ({
    matches: false,
    media: query,
    onchange: null,
    addListener: vi.fn(),
    removeListener: vi.fn(),
    addEventListener: vi.fn(),
    removeEventListener: vi.fn(),
    dispatchEvent: vi.fn(),
  }),
});
class ResizeObserverStub {
  observe() {}
  unobserve() {}
  disconnect() {}
}
window.ResizeObserver = window.ResizeObserver ?? ResizeObserverStub;
Element.prototype.scrollIntoView = Element.prototype.scrollIntoView ?? function scrollIntoView() {};
window.HTMLElement.prototype.scrollTo = window.HTMLElement.prototype.scrollTo ?? function scrollTo() {};
// jsdom has no object URLs: media is shown through them (features/ticket/useMedia.ts).
let objectUrls = 0;
URL.createObjectURL = URL.createObjectURL ?? (() => `blob:test/${(objectUrls += 1)}`);
URL.revokeObjectURL = URL.revokeObjectURL ?? (() => undefined);

afterEach(() => {
  cleanup();
  notifications.clean(); // the notifications store is global: no toast leaks into the next test
  window.localStorage.clear();
  vi.unstubAllGlobals();
});
