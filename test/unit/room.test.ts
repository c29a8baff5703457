import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { entriesOf, refusedRequests } from '../../src/backends/ebpf/room.js';

const request = (key: string, entries: number, inMap = false) => ({ key, entries, inMap });

describe('room in kube_lb_svc', () => {
  it('a frontend takes its slot 0 and one slot per backend', () => {
    assert.equal(entriesOf(null), 0);
    assert.equal(entriesOf([]), 1);
    assert.equal(entriesOf([{}, {}, {}]), 4);
  });

  it('refuses nothing when everything fits, up to the last entry', () => {
    assert.deepEqual(refusedRequests(10, [request('a', 4), request('b', 6)]), { refused: new Set(), left: 0 });
    assert.deepEqual(refusedRequests(3, []), { refused: new Set(), left: 3 });
  });

  it('refuses what does not fit and lets later, smaller requests in', () => {
    assert.deepEqual(refusedRequests(10, [request('a', 4), request('b', 7), request('c', 6)]), { refused: new Set(['b']), left: 0 });
  });

  it('decides new service ports in key order, whatever order they come in', () => {
    const requests = [request('default/c:http', 5), request('default/a:http', 5), request('default/b:http', 5)];
    assert.deepEqual(refusedRequests(10, requests).refused, new Set(['default/c:http']));
    assert.deepEqual(refusedRequests(10, [...requests].reverse()).refused, new Set(['default/c:http']));
  });

  it('lets frontends already in the map grow before new service ports get room', () => {
    assert.deepEqual(refusedRequests(5, [request('default/a:http', 5), request('default/z:http', 5, true)]).refused, new Set(['default/a:http']));
  });

  it('refuses a request larger than the whole map however empty it is', () => {
    assert.deepEqual(refusedRequests(64, [request('default/huge:http', 65)]), { refused: new Set(['default/huge:http']), left: 64 });
  });
});
