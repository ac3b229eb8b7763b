import { renderHook, waitFor } from '@testing-library/react';
import type { ReactNode } from 'react';
import { MemoryRouter } from 'react-router';
import { beforeEach, describe, expect, it } from 'vitest';
import { makeQueryClient, Providers } from '../../App';
import type { Department } from '../../api/types';
import { keys } from '../../realtime/cache';
import { agentUser, mockApi, signIn, stubWebSocket } from '../../test/utils';
import { isUnstaffed, unstaffed, useUnstaffedDepartments } from './staffing';

const department = (over: Partial<Department>): Department => ({
  id: 'd'.repeat(24), name: 'Suporte', description: '', active: true, reseller_id: 'r'.repeat(24), created_at: '2025-01-01T00:00:00Z', active_agents: 0, ...over,
});
const suporte = department({});
const vendas = department({ id: 'e'.repeat(24), name: 'Vendas', active_agents: 2 });
const antigo = department({ id: 'f'.repeat(24), name: 'Antigo', active: false });

beforeEach(() => stubWebSocket());

function wrapper() {
  const client = makeQueryClient();
  client.setDefaultOptions({ queries: { retry: false, staleTime: Infinity } });
  const Wrapper = ({ children }: { children: ReactNode }) => (
    <MemoryRouter>
      <Providers client={client}>{children}</Providers>
    </MemoryRouter>
  );
  return { client, Wrapper };
}

describe('unstaffed', () => {
  it('is an active department with no active agent; an inactive one receives nothing', () => {
    expect(isUnstaffed(suporte)).toBe(true);
    expect(isUnstaffed(vendas)).toBe(false);
    expect(isUnstaffed(antigo)).toBe(false);
    expect(unstaffed([suporte, vendas, antigo])).toEqual([suporte]);
  });
});

describe('useUnstaffedDepartments', () => {
  it('gives the owner its unstaffed departments', async () => {
    const owner = agentUser({ role: 'reseller', department_ids: [] });
    signIn(owner);
    mockApi(({ path }) => {
      if (path === '/api/v1/departments') return { body: { items: [suporte, vendas, antigo], next_cursor: null } };
      return undefined;
    });
    const { Wrapper } = wrapper();
    const { result } = renderHook(() => useUnstaffedDepartments(), { wrapper: Wrapper });
    await waitFor(() => expect(result.current.map((d) => d.name)).toEqual(['Suporte']));
  });

  it('gives an agent nothing and asks nothing, even with the departments already cached', async () => {
    signIn(agentUser());
    const calls = mockApi(() => undefined);
    const { client, Wrapper } = wrapper();
    client.setQueryData(keys.departments, [suporte]);
    const { result } = renderHook(() => useUnstaffedDepartments(), { wrapper: Wrapper });
    expect(result.current).toEqual([]);
    await new Promise((r) => setTimeout(r, 20));
    expect(calls.filter((c) => c.path === '/api/v1/departments')).toEqual([]);
  });
});
