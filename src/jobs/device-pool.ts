// The training devices of one worker process and which runs hold them. A run takes
// params.devices of them when it is claimed and gives them back when its run ends, however
// it ends (the JobRunner's capacity). With TRAIN_DEVICES each device trains one run at a time;
// a shared TRAIN_DEVICE takes TRAINING_SLOTS runs, each on that one device.
export class DevicePool {
  readonly devices: readonly string[];
  readonly #runsPerDevice: number;
  /** Runs on each device, by its index in `devices`. */
  readonly #load: number[];
  /** The devices (indexes) each run holds. */
  readonly #held = new Map<string, number[]>();

  constructor(devices: readonly string[], runsPerDevice = 1) {
    if (devices.length === 0) throw new Error('a device pool needs at least one device');
    this.devices = devices;
    this.#runsPerDevice = runsPerDevice;
    this.#load = devices.map(() => 0);
  }

  get size(): number {
    return this.devices.length;
  }

  /** Devices with room for one more run: the most devices a run claimed now may ask. */
  free(): number {
    return this.#load.filter((runs) => runs < this.#runsPerDevice).length;
  }

  /** Devices training at least one run. */
  busy(): number {
    return this.#load.filter((runs) => runs > 0).length;
  }

  /** Gives run `runId` `count` devices with room (the least loaded, then the first); throws when there are fewer. */
  take(runId: string, count: number): string[] {
    if (this.#held.has(runId)) throw new Error(`run ${runId} already holds devices`);
    const open = this.#load.map((runs, index) => ({ runs, index })).filter(({ runs }) => runs < this.#runsPerDevice);
    if (open.length < count) throw new Error(`run ${runId} asks ${count} devices but ${open.length} are free`);
    const chosen = open.sort((a, b) => a.runs - b.runs || a.index - b.index).slice(0, count).map(({ index }) => index).sort((a, b) => a - b);
    for (const index of chosen) this.#load[index]! += 1;
    this.#held.set(runId, chosen);
    return chosen.map((index) => this.devices[index]!);
  }

  /** The devices run `runId` holds ([] when none). */
  of(runId: string): string[] {
    return (this.#held.get(runId) ?? []).map((index) => this.devices[index]!);
  }

  /** Run `runId` ended: its devices are free again (nothing when it held none). */
  give(runId: string): void {
    for (const index of this.#held.get(runId) ?? []) this.#load[index]! -= 1;
    this.#held.delete(runId);
  }
}
