import { useRef } from 'react';
import { useSearchParams } from 'react-router';

/** The page's URL query, and a way to change some of its keys (an empty value removes the key),
 * replacing the history entry. Changes build on the URL as last written: a second change before
 * the re-render (a tab, then at once the search box) would otherwise start from the params this
 * render read and put the first change back. */
export function useUrlParams(): [URLSearchParams, (next: Record<string, string | null>) => void] {
  const [params, setParams] = useSearchParams();
  const latest = useRef({ read: params, written: params });
  if (latest.current.read !== params) latest.current = { read: params, written: params };

  function update(next: Record<string, string | null>) {
    const merged = new URLSearchParams(latest.current.written);
    for (const [k, v] of Object.entries(next)) {
      if (v) merged.set(k, v);
      else merged.delete(k);
    }
    latest.current.written = merged;
    setParams(merged, { replace: true });
  }

  return [params, update];
}
