// Packs caption requests into batches as they are built: a batch is full at `maxRequests`
// requests, or when the next request would take its body past `maxBytes` (the provider's
// per-batch size limit). A request larger than maxBytes on its own still gets a batch, for
// the provider to refuse with a per-image error rather than for the job to stall.
import type { BatchRequest } from '../captioning/captioner.js';

export class BatchPacker {
  #pending: BatchRequest[] = [];
  #bytes = 0;

  constructor(private readonly limits: { maxRequests: number; maxBytes: number }) {}

  /** Adds a request; returns the batch it closed (to send now), if it closed one. */
  add(request: BatchRequest): BatchRequest[] | undefined {
    let full: BatchRequest[] | undefined;
    if (this.#pending.length >= this.limits.maxRequests || (this.#pending.length > 0 && this.#bytes + request.bytes > this.limits.maxBytes)) {
      full = this.flush();
    }
    this.#pending.push(request);
    this.#bytes += request.bytes;
    return full;
  }

  /** The batch being filled (possibly empty), and a fresh one started. */
  flush(): BatchRequest[] {
    const batch = this.#pending;
    this.#pending = [];
    this.#bytes = 0;
    return batch;
  }
}
