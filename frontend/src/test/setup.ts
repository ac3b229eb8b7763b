import '@testing-library/jest-dom/vitest';
import { notifications } from '@mantine/notifications';
import { cleanup } from '@testing-library/react';
import { afterEach, vi } from 'vitest';

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
