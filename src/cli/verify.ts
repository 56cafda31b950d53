// npm run verify -- --model <dir|file> [--config <dir>] --golden <dir>
//                   [--device cuda] [--dtype bfloat16] [--out results.safetensors]
//
// Recomputes every tensor of a golden fixture with the native engine and
// compares: prints name, max |diff|, tolerance and PASS/FAIL per tensor, then a
// summary. Exits 1 on any failure or error.
import { parseArgs } from 'node:util';

import { verify, type Progress, type VerifyReport } from '../engine/index.js';

const USAGE = `Usage: npm run verify -- --model <dir|file> [--config <dir>] --golden <dir>
                         [--device cpu|cuda|cuda:N] [--dtype float32|bfloat16|float16] [--out <file.safetensors>]

  --model   a diffusers folder (model_index.json) or one single-file .safetensors (SGM for SDXL, LDM for SD 1.x)
  --config  for a single file: a diffusers folder of the same family whose configs to use
  --golden  folder with golden.json + golden.safetensors (+ lora/)
  --out     write the computed tensors to this .safetensors file`;

const PROGRESS_INTERVAL_MS = 500;

function parseCommandLine(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' },
      config: { type: 'string' },
      golden: { type: 'string' },
      device: { type: 'string' },
      dtype: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  });
  return values;
}

export function formatReport(report: VerifyReport): string {
  const header = ['name', 'max |diff|', 'tolerance', 'result'];
  const rows = report.rows.map((row) => [
    row.name,
    row.maxAbsDiff.toExponential(3),
    row.tolerance.toExponential(1),
    row.pass ? 'PASS' : 'FAIL',
  ]);
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  const line = (cells: string[]) =>
    cells.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join('  ');
  const failed = report.rows.filter((row) => !row.pass).length;
  return [
    line(header),
    widths.map((width) => '-'.repeat(width)).join('  '),
    ...rows.map(line),
    '',
    `${report.rows.length - failed} passed, ${failed} failed: ${report.pass ? 'PASS' : 'FAIL'}`,
  ].join('\n');
}

function progressReporter(): (progress: Progress) => void {
  let last = 0;
  return (progress) => {
    const now = Date.now();
    if (now - last < PROGRESS_INTERVAL_MS && progress.step !== progress.total) return;
    last = now;
    const counter = progress.total > 0 ? ` ${progress.step}/${progress.total}` : '';
    process.stderr.write(`[${progress.phase}${counter}] ${progress.message}\n`);
  };
}

async function main(argv: string[]): Promise<number> {
  let values: ReturnType<typeof parseCommandLine>;
  try {
    values = parseCommandLine(argv);
  } catch (error) {
    process.stderr.write(`verify: ${(error as Error).message}\n${USAGE}\n`);
    return 1;
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (!values.model || !values.golden) {
    process.stderr.write(`verify: --model and --golden are required\n${USAGE}\n`);
    return 1;
  }

  const job = verify(
    {
      modelPath: values.model,
      goldenDir: values.golden,
      ...(values.config !== undefined && { configDir: values.config }),
      ...(values.device !== undefined && { device: values.device }),
      ...(values.dtype !== undefined && { dtype: values.dtype }),
      ...(values.out !== undefined && { outPath: values.out }),
    },
    progressReporter(),
  );
  const interrupt = () => {
    process.stderr.write('verify: cancelling...\n');
    job.cancel();
  };
  process.once('SIGINT', interrupt);
  try {
    const report = await job.promise;
    process.stdout.write(`${formatReport(report)}\n`);
    if (values.out) process.stderr.write(`verify: computed tensors written to ${values.out}\n`);
    return report.pass && report.rows.length > 0 ? 0 : 1;
  } catch (error) {
    const { message, code } = error as Error & { code?: string };
    process.stderr.write(`verify: ${code ? `${code}: ` : ''}${message}\n`);
    return 1;
  } finally {
    process.off('SIGINT', interrupt);
  }
}

process.exitCode = await main(process.argv.slice(2));
