// Schemas the console reads from openapi/openapi.json at build time (scripts/build-console.ts
// resolves `openapi:` imports), so forms are built from what the API validates with.

declare module 'openapi:training-params' {
  /** The part of JSON Schema the API's params use (TypeBox's output, as the OpenAPI document has it). */
  export interface ParamSchema {
    type?: 'integer' | 'number' | 'boolean' | 'string' | 'object' | 'array' | 'null';
    description?: string;
    default?: unknown;
    enum?: ReadonlyArray<string | number>;
    minimum?: number;
    maximum?: number;
    exclusiveMinimum?: number;
    exclusiveMaximum?: number;
    multipleOf?: number;
    minLength?: number;
    maxLength?: number;
    maxItems?: number;
    items?: ParamSchema;
    properties?: Record<string, ParamSchema>;
    additionalProperties?: boolean;
    anyOf?: ParamSchema[];
    /** The model families the field is for (sd1, sd2, sdxl); absent: every family. */
    'x-model-families'?: ReadonlyArray<'sd1' | 'sd2' | 'sdxl'>;
    /** The training methods the param is for (lora, full); absent: both. */
    'x-training-methods'?: ReadonlyArray<'lora' | 'full'>;
    /** The param's default under each method it applies to, where it differs by method (the schema then has no `default`). */
    'x-method-defaults'?: Partial<Record<'lora' | 'full', unknown>>;
  }

  /** The `params` object of POST /v1/training-runs. */
  const schema: ParamSchema & { properties: Record<string, ParamSchema> };
  export default schema;
}

declare module 'openapi:generation-request' {
  import type { ParamSchema } from 'openapi:training-params';

  /** The body of POST /v1/generations: its fields' limits bound the generate form. */
  const schema: ParamSchema & { properties: Record<string, ParamSchema> };
  export default schema;
}
