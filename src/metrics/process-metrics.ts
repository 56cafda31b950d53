// Metrics of the Node process itself (CPU, memory, GC, event-loop lag, handles): one
// registry per process, created on first use. Every app of the process shows them; per
// app they would start one event-loop monitor each.
import { Registry, collectDefaultMetrics } from 'prom-client';

let registry: Registry | undefined;

export function processRegistry(): Registry {
  if (registry === undefined) {
    registry = new Registry();
    collectDefaultMetrics({ register: registry });
  }
  return registry;
}
