import type { FastifyServerOptions } from 'fastify'
import type { Config } from '../plugins/config.js'

/**
 * Paths pino blanks before a line is written. Authorization headers, cookies, client secrets and
 * tokens never reach the log pipeline, wherever a caller puts them.
 */
export const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["proxy-authorization"]',
  'res.headers["set-cookie"]',
  'headers.authorization',
  'headers.cookie',
  '*.client_secret', '*.clientSecret', '*.access_token', '*.accessToken', '*.token', '*.secret', '*.password',
  '*.*.client_secret', '*.*.clientSecret', '*.*.access_token', '*.*.token',
  'client_secret', 'clientSecret', 'access_token', 'token', 'secret', 'password'
]

/** The one logger configuration (pino JSON on stdout); `destination` lets tests capture the lines. */
export function loggerOptions (config: Pick<Config, 'LOG_LEVEL'>, destination?: NodeJS.WritableStream): FastifyServerOptions['logger'] {
  return {
    level: config.LOG_LEVEL,
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    ...(destination === undefined ? {} : { stream: destination }),
    serializers: {
      // the path only: a query string may carry a secret sent where it should not have been
      req (request: { method: string, url: string, ip?: string, headers: Record<string, unknown> }) {
        return {
          method: request.method,
          url: request.url.split('?')[0],
          remoteAddress: request.ip,
          userAgent: request.headers['user-agent']
        }
      }
    }
  }
}
