// How a route's request schema becomes the OpenAPI document: a field or parameter
// with a `default` is optional to the caller, since the server fills it in.
//
// Route schemas list such fields as required, so that after validation (Ajv's
// useDefaults) handlers see them filled in and their TypeBox types say so. Left
// as they are, the document would tell SDK generators that a client must send
// `limit` or `overwrite`. This rewrites copies for the document only; validation
// keeps the route's own schemas.
type JsonSchema = Record<string, unknown>;

/** The request parts of a route schema that callers send. */
const REQUEST_PARTS = ['querystring', 'params', 'headers', 'body'] as const;

const isSchema = (value: unknown): value is JsonSchema =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** A copy of `schema` in which no property that has a default is required, at any depth. */
export function defaultsOptional(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(defaultsOptional);
  if (!isSchema(schema)) return schema;
  const copy: JsonSchema = {};
  for (const [key, value] of Object.entries(schema)) {
    // `properties` maps names to schemas; `default` and `examples` are values, not schemas.
    if (key === 'properties' && isSchema(value)) {
      copy[key] = Object.fromEntries(Object.entries(value).map(([name, property]) => [name, defaultsOptional(property)]));
    } else if (key === 'default' || key === 'examples' || key === 'const' || key === 'enum') {
      copy[key] = value;
    } else {
      copy[key] = defaultsOptional(value);
    }
  }
  const properties = schema.properties;
  if (Array.isArray(schema.required) && isSchema(properties)) {
    const required = (schema.required as string[]).filter(
      (name) => !(isSchema(properties[name]) && 'default' in properties[name]),
    );
    if (required.length > 0) copy.required = required;
    else delete copy.required;
  }
  return copy;
}

/** The route schema as the document should describe it (@fastify/swagger's `transform`). */
export function documentedRouteSchema<T extends object>(schema: T): T {
  if (!isSchema(schema)) return schema; // a route without a schema
  const documented: JsonSchema = { ...schema };
  for (const part of REQUEST_PARTS) {
    if (schema[part] !== undefined) documented[part] = defaultsOptional(schema[part]);
  }
  return documented as T;
}
