import { useMemo } from 'react';
import { useDepartments } from '../../api/queries';
import type { Department } from '../../api/types';
import { useMe } from '../../auth/session';

// A department whose agents were all deactivated or moved away (or that never had one) still
// receives conversations, and only the tenant's owner sees them: a queue nobody serves. The one
// home of that rule; the backend counts the active agents (backend/users/service.py
// `active_agents_by_department`).

/** An active department with no active agent: its waiting conversations reach only the owner. */
export function isUnstaffed(department: Department): boolean {
  return department.active && department.active_agents === 0;
}

export function unstaffed(departments: readonly Department[]): Department[] {
  return departments.filter(isUnstaffed);
}

/** The unstaffed departments' names by id: what the owner's alerts look tickets up in. */
export function namesById(departments: readonly Department[]): ReadonlyMap<string, string> {
  return new Map(departments.map((d) => [d.id, d.name]));
}

const NONE: Department[] = [];

/** The owner's unstaffed departments; nothing (and no request) for anyone else. The role is asked
 * here and not only through `enabled`: an agent's screens may have the departments cached. */
export function useUnstaffedDepartments(): Department[] {
  const owner = useMe().role === 'reseller';
  const departments = useDepartments(owner);
  return useMemo(() => (owner && departments.data ? unstaffed(departments.data) : NONE), [owner, departments.data]);
}
