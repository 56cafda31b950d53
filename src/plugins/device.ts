// Where this process trains and generates: TRAIN_DEVICES (a pool of devices, one run on each
// at a time), else TRAIN_DEVICE (one device that TRAINING_SLOTS runs share), else the GPU
// when the engine sees one.
import { ConfigError, type Config } from '../config.js';
import { buildInfo } from '../engine/index.js';

/** TRAIN_DEVICE, else cuda when the engine sees a GPU, else cpu (also when the engine is not built). */
export function trainingDevice(configured: string | undefined): string {
  if (configured !== undefined) return configured;
  try {
    return buildInfo().cudaAvailable ? 'cuda' : 'cpu';
  } catch {
    return 'cpu';
  }
}

/** The training devices of this process as the worker's pool holds them. */
export interface TrainingDevices {
  /** Each device once (the CPU as often as it is named). */
  devices: string[];
  /** Runs one device takes at once: 1 for a pool, TRAINING_SLOTS for a shared device. */
  runsPerDevice: number;
  /** Runs this process trains at once (TRAINING_SLOTS, else one per device of a pool). */
  slots: number;
}

/** Every CUDA device the engine sees, for TRAIN_DEVICES=all; a ConfigError when it sees none. */
function allCudaDevices(): string[] {
  let count = 0;
  try {
    count = buildInfo().cudaDeviceCount;
  } catch (error) {
    throw new ConfigError(`invalid configuration: TRAIN_DEVICES is all but the engine could not be asked for its CUDA devices: ${(error as Error).message}`);
  }
  if (count === 0) throw new ConfigError('invalid configuration: TRAIN_DEVICES is all but the engine sees no CUDA device; name the devices (cpu, cuda:0,...)');
  return Array.from({ length: count }, (_, index) => `cuda:${index}`);
}

/** Resolves the configured devices (TRAIN_DEVICES=all asks the engine) and the slots that follow from them. */
export function trainingDevices(training: Pick<Config['training'], 'devices' | 'slots'>): TrainingDevices {
  if ('shared' in training.devices) {
    const slots = training.slots ?? 1;
    return { devices: [trainingDevice(training.devices.shared)], runsPerDevice: Math.max(1, slots), slots };
  }
  // A process that trains nothing (ROLE=api) does not ask the engine: its CUDA devices do not matter.
  if (training.devices.pool === 'all' && training.slots === 0) return { devices: [trainingDevice(undefined)], runsPerDevice: 1, slots: 0 };
  const devices = training.devices.pool === 'all' ? allCudaDevices() : training.devices.pool;
  return { devices, runsPerDevice: 1, slots: training.slots ?? devices.length };
}
