import { screen } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { ApiError } from '../api/client';
import { renderApp } from '../test/utils';
import { FormActions } from './Crud';

const failed = (error: unknown) => ({ isError: true, isPending: false, error });
// A 422 naming two body fields: `name` (an input of the form) and `department_ids` (none).
const refused = new ApiError(422, [
  { type: 'string_too_long', loc: ['body', 'name'], msg: 'String should have at most 120 characters' },
  { type: 'list_type', loc: ['body', 'department_ids'], msg: 'Input should be a valid list' },
]);

describe('FormActions', () => {
  it('shows a field error of a field the form has no input for', () => {
    renderApp(<FormActions mutation={failed(refused)} fields={['name']} disabled={false} />);
    const alert = screen.getByRole('alert');
    expect(alert).toHaveTextContent('Valor inválido.');
    // `name`'s message is on its input: not repeated here.
    expect(alert).not.toHaveTextContent('Use no máximo 120 caracteres.');
  });

  it('shows nothing of field errors the form shows on its inputs', () => {
    renderApp(<FormActions mutation={failed(refused)} fields={['name', 'department_ids']} disabled={false} />);
    expect(screen.queryByRole('alert')).not.toBeInTheDocument();
    expect(screen.queryByText('Use no máximo 120 caracteres.')).not.toBeInTheDocument();
    expect(screen.queryByText('Valor inválido.')).not.toBeInTheDocument();
  });

  it('shows each unshown message once', () => {
    const twice = new ApiError(422, [
      { type: 'missing', loc: ['body', 'owner_name'], msg: 'Field required' },
      { type: 'missing', loc: ['body', 'provider'], msg: 'Field required' },
    ]);
    renderApp(<FormActions mutation={failed(twice)} fields={[]} disabled={false} />);
    expect(screen.getByRole('alert').textContent).toBe('Preencha este campo.');
  });

  it('shows the whole message of an error naming no field, unless the form shows it on a field', () => {
    const conflict = new ApiError(409, 'email already in use');
    const { unmount } = renderApp(<FormActions mutation={failed(conflict)} fields={['email']} disabled={false} />);
    expect(screen.getByRole('alert')).toHaveTextContent('Já existe um usuário com este e-mail.');
    unmount();
    renderApp(<FormActions mutation={failed(conflict)} fields={['email']} shownOnField disabled={false} />);
    expect(screen.queryByRole('alert')).not.toBeInTheDocument();
  });

  it('shows nothing before the mutation fails', () => {
    renderApp(<FormActions mutation={{ isError: false, isPending: false, error: null }} fields={[]} disabled={false} />);
    expect(screen.queryByRole('alert')).not.toBeInTheDocument();
  });
});
