import { Ajv, type Options as AjvOptions, type ValidateFunction } from 'ajv'
import ajvFormats from 'ajv-formats'
import type { FastifySchemaCompiler } from 'fastify'

/**
 * Request validation. Unknown fields are answered with 400, never silently dropped
 * (`removeAdditional: false`; Fastify's default would drop them). Query strings and path
 * parameters arrive as text and are coerced ("20" → 20); a JSON body is judged as sent: 123 is not
 * an owner and ["a@b.c"] is not an email.
 */
const OPTIONS: AjvOptions = { removeAdditional: false, useDefaults: true, allErrors: false, addUsedSchema: false }

function ajvWith (coerceTypes: AjvOptions['coerceTypes'], named: readonly object[]): Ajv {
  const ajv = new Ajv({ ...OPTIONS, coerceTypes })
  // ajv-formats is CommonJS: under NodeNext its callable export is the module's `default`
  ajvFormats.default(ajv)
  // the named schemas (schemas/components.ts) that route schemas reference by `$ref`
  for (const schema of named) ajv.addSchema(schema)
  return ajv
}

/**
 * Ajv coerces "1e309" and "Infinity" to Infinity, calls it an integer and skips `minimum`/`maximum`
 * for a number that is not finite: `?limit=1e309` reached SQL as "Infinity" (a 500). Text coerced
 * to a number must be finite (the members of a query or path object, or of their arrays).
 */
function finiteNumbersOnly (validate: ValidateFunction): ValidateFunction {
  const checked = function validateText (data: unknown) {
    if (!validate(data)) {
      checked.errors = validate.errors
      return false
    }
    const members = data !== null && typeof data === 'object' ? Object.entries(data) : []
    for (const [name, value] of members) {
      if ([value].flat().some((item) => typeof item === 'number' && !Number.isFinite(item))) {
        checked.errors = [{ instancePath: `/${name}`, schemaPath: '#/type', keyword: 'type', params: {}, message: 'must be a finite number' }]
        return false
      }
    }
    checked.errors = null
    return true
  } as ValidateFunction
  return checked
}

/** `named`: the schemas with an `$id` that route schemas may reference. */
export function validatorCompiler (named: readonly object[] = []): FastifySchemaCompiler<unknown> {
  const forBodies = ajvWith(false, named)
  const forText = ajvWith('array', named)
  return function compileValidator ({ schema, httpPart }) {
    return httpPart === 'body' ? forBodies.compile(schema as object) : finiteNumbersOnly(forText.compile(schema as object))
  }
}
