import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ChangeTracker } from '../../src/model/change-tracker.js';
import { ProxyModel } from '../../src/model/model.js';
import { parseObject, type RawObject } from '../../src/model/objects.js';
import { rawNode, rawService, rawSlice, readyEndpoint, testModel } from './fixtures.js';

const httpPort = [{ name: 'http', port: 8080 }];

/** A model holding `objects`, with the changes of loading them already taken. */
function settledModel(...objects: RawObject[]): ProxyModel {
  const model = testModel();
  for (const raw of objects) model.upsert(parseObject(raw));
  model.changes.take();
  return model;
}

function upsert(model: ProxyModel, raw: RawObject): boolean {
  return model.upsert(parseObject(raw));
}

describe('ChangeTracker', () => {
  test('includes the keys from before and after a change', () => {
    let keys: Record<string, string[]> = { 'default/web': ['default/web:http', 'default/web:admin'] };
    const tracker = new ChangeTracker((service) => keys[service] ?? []);
    tracker.markService('default', 'web');
    keys = { 'default/web': ['default/web:http', 'default/web:https'] };
    assert.deepEqual(tracker.pending(), { services: 1, endpoints: 0 });
    const changes = tracker.take();
    assert.deepEqual([...changes.changedKeys].sort(), ['default/web:admin', 'default/web:http', 'default/web:https']);
    assert.equal(changes.services, 1);
    assert.equal(changes.endpoints, 0);
  });

  test('take() starts over', () => {
    const tracker = new ChangeTracker(() => ['default/web:http']);
    tracker.markEndpoints('default', 'web');
    assert.equal(tracker.take().changedKeys.size, 1);
    assert.deepEqual(tracker.pending(), { services: 0, endpoints: 0 });
    assert.deepEqual(tracker.take(), { changedKeys: new Set(), services: 0, endpoints: 0 });
  });
});

describe('ProxyModel change tracking', () => {
  test('re-upserting identical objects records nothing', () => {
    const objects = [rawService('web'), rawSlice('web-1', 'web', httpPort, [readyEndpoint('10.1.0.1')]), rawNode('worker-1', 'zone-a', '192.168.1.11')];
    const model = settledModel(...objects);
    for (const raw of objects) assert.equal(upsert(model, structuredClone(raw)), false);
    assert.deepEqual(model.changes.pending(), { services: 0, endpoints: 0 });
    assert.deepEqual(model.changes.take(), { changedKeys: new Set(), services: 0, endpoints: 0 });
  });

  test('service and endpoint changes are counted apart, once per service', () => {
    const model = settledModel(rawService('web'), rawService('api'));
    upsert(model, rawService('web', { sessionAffinity: 'ClientIP' }));
    upsert(model, rawService('web', { sessionAffinity: 'None' }));
    upsert(model, rawSlice('web-1', 'web', httpPort, [readyEndpoint('10.1.0.1')]));
    upsert(model, rawSlice('web-2', 'web', httpPort, [readyEndpoint('10.1.0.2')]));
    upsert(model, rawSlice('api-1', 'api', httpPort, [readyEndpoint('10.1.0.3')]));
    assert.deepEqual(model.changes.pending(), { services: 1, endpoints: 2 });
    const changes = model.changes.take();
    assert.deepEqual([...changes.changedKeys].sort(), ['default/api:http', 'default/web:http']);
    assert.equal(changes.services, 1);
    assert.equal(changes.endpoints, 2);
  });

  test('deleting a service records its old keys', () => {
    const model = settledModel(rawService('web', { ports: [{ name: 'http', port: 80 }, { name: 'https', port: 443 }] }));
    model.delete('Service', 'default', 'web');
    assert.deepEqual([...model.changes.take().changedKeys].sort(), ['default/web:http', 'default/web:https']);
  });

  test('renaming a port records the old and the new key', () => {
    const model = settledModel(rawService('web'));
    upsert(model, rawService('web', { ports: [{ name: 'web', port: 80 }] }));
    assert.deepEqual([...model.changes.take().changedKeys].sort(), ['default/web:http', 'default/web:web']);
  });

  test('a service turning headless records the keys it had', () => {
    const model = settledModel(rawService('web'));
    upsert(model, rawService('web', { clusterIP: 'None' }));
    assert.deepEqual([...model.changes.take().changedKeys], ['default/web:http']);
    assert.equal(model.desiredState().size, 0);
  });

  test('a slice moved between services marks both', () => {
    const model = settledModel(rawService('web'), rawService('api'), rawSlice('shared-1', 'web', httpPort, [readyEndpoint('10.1.0.1')]));
    upsert(model, rawSlice('shared-1', 'api', httpPort, [readyEndpoint('10.1.0.1')]));
    const changes = model.changes.take();
    assert.deepEqual([...changes.changedKeys].sort(), ['default/api:http', 'default/web:http']);
    assert.equal(changes.endpoints, 2);
  });

  test('deleting a slice records its service keys; node changes record nothing', () => {
    const model = settledModel(rawService('web'), rawSlice('web-1', 'web', httpPort, [readyEndpoint('10.1.0.1')]));
    model.delete('EndpointSlice', 'default', 'web-1');
    upsert(model, rawNode('worker-1', 'zone-a', '192.168.1.11'));
    assert.deepEqual(model.changes.take(), { changedKeys: new Set(['default/web:http']), services: 0, endpoints: 1 });
  });
});
