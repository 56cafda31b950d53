// Request validation with two Ajv configurations. Query strings, params and headers arrive
// as text, so their values are coerced ("20" -> 20); JSON bodies are typed already, so
// nothing is coerced there ({"name": 42} is an error, not "42"). Both keep unknown fields
// as errors that name them (Ajv's removeAdditional is off) and report every invalid field.
import AjvCompiler from '@fastify/ajv-compiler';
import { FAMILIES_KEYWORD } from './schemas/model-families.js';
import { METHOD_DEFAULTS_KEYWORD, METHODS_KEYWORD } from './schemas/training-params.js';

const COMMON_OPTIONS = {
  removeAdditional: false,
  useDefaults: true,
  // Bodies are bounded by BODY_LIMIT_BYTES, so listing all errors stays cheap.
  allErrors: true,
  // Annotations the document carries for clients (the console reads them), not checks.
  keywords: [FAMILIES_KEYWORD, METHODS_KEYWORD, METHOD_DEFAULTS_KEYWORD],
} as const;

interface RouteDefinition {
  httpPart: string;
}
type CompileRoute = (route: RouteDefinition) => unknown;

/** fastify's schemaController.compilersFactory.buildValidator. */
export function buildValidator(externalSchemas: unknown, ajvOptions?: { plugins?: unknown[] }): CompileRoute {
  const plugins = ajvOptions?.plugins ?? [];
  const compilerFor = (coerceTypes: false | 'array') =>
    AjvCompiler()(externalSchemas as never, { customOptions: { ...COMMON_OPTIONS, coerceTypes }, plugins } as never) as unknown as CompileRoute;
  const bodyCompiler = compilerFor(false);
  const textCompiler = compilerFor('array');
  return (route) => (route.httpPart === 'body' ? bodyCompiler(route) : textCompiler(route));
}
