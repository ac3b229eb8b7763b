import { useEffect, useRef } from 'react';

/** Whether the component is still on screen, for a request's callback that outlives it (an
 * answer arriving after the agent moved on must be told some other way than in that component). */
export function useMounted(): { readonly current: boolean } {
  const mounted = useRef(true);
  useEffect(() => {
    mounted.current = true;
    return () => {
      mounted.current = false;
    };
  }, []);
  return mounted;
}
