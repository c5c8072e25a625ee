import { Ajv, type Options as AjvOptions } from 'ajv'
import ajvFormats from 'ajv-formats'
import type { FastifySchemaCompiler } from 'fastify'

/**
 * Request validation. Unknown fields are answered with 400, never silently dropped
 * (`removeAdditional: false`; Fastify's default would drop them). Query strings and path
 * parameters arrive as text and are coerced ("20" → 20); a JSON body is judged as sent: 123 is not
 * an owner and ["a@b.c"] is not an email.
 */
const OPTIONS: AjvOptions = { removeAdditional: false, useDefaults: true, allErrors: false, addUsedSchema: false }

function ajvWith (coerceTypes: AjvOptions['coerceTypes']): Ajv {
  const ajv = new Ajv({ ...OPTIONS, coerceTypes })
  // ajv-formats is CommonJS: under NodeNext its callable export is the module's `default`
  ajvFormats.default(ajv)
  return ajv
}

export function validatorCompiler (): FastifySchemaCompiler<unknown> {
  const forBodies = ajvWith(false)
  const forText = ajvWith('array')
  return function compileValidator ({ schema, httpPart }) {
    return (httpPart === 'body' ? forBodies : forText).compile(schema as object)
  }
}
