import { describe, expect, it } from 'vitest';
import { splitSignature } from './MessageThread';

describe('splitSignature', () => {
  it('splits the bold name line an agent reply was sent with from its text', () => {
    expect(splitSignature('*Ana Souza:*\nBom dia!\nComo posso ajudar?')).toEqual({ signature: 'Ana Souza:', text: 'Bom dia!\nComo posso ajudar?' });
  });

  it('leaves a text without a signature line as it is', () => {
    expect(splitSignature('*importante*: leia')).toEqual({ signature: null, text: '*importante*: leia' });
    expect(splitSignature('Bom dia')).toEqual({ signature: null, text: 'Bom dia' });
  });
});
