/**
 * The layers of ARCHITECTURE.md, enforced (`npm run check:architecture`, run by .ci/run and by
 * test/architecture.test.ts): imports point down only —
 *   entry (server.ts, cli/) → app.ts → plugins/, routes/<area>/ → services/ → repositories/ → schemas/, lib/
 * Type-only imports count: a type is as much a dependency as a value.
 */
const UP_FROM_LIB = '^(app|server)\\.ts$|^(cli|plugins|routes|services|repositories|schemas)/'

module.exports = {
  forbidden: [
    { name: 'no-cycles', severity: 'error', comment: 'a cycle makes two modules one; split what they share into a lower layer', from: {}, to: { circular: true } },
    { name: 'lib-is-a-leaf', severity: 'error', comment: 'lib/ imports only lib/', from: { path: '^lib/' }, to: { path: UP_FROM_LIB } },
    { name: 'schemas-are-leaves', severity: 'error', comment: 'schemas/ imports only schemas/ and lib/', from: { path: '^schemas/' }, to: { path: '^(app|server)\\.ts$|^(cli|plugins|routes|services|repositories)/' } },
    { name: 'repositories-point-down', severity: 'error', comment: 'repositories/ (all SQL) imports only repositories/, schemas/ and lib/', from: { path: '^repositories/' }, to: { path: '^(app|server)\\.ts$|^(cli|plugins|routes|services)/' } },
    { name: 'services-point-down', severity: 'error', comment: 'services/ is not HTTP: it imports services/, repositories/, schemas/ and lib/', from: { path: '^services/' }, to: { path: '^(app|server)\\.ts$|^(cli|plugins|routes)/' } },
    { name: 'plugins-never-import-routes', severity: 'error', comment: 'capabilities reach routes only through decorators, never by import', from: { path: '^plugins/' }, to: { path: '^(app|server)\\.ts$|^(cli|routes)/' } },
    { name: 'routes-point-down', severity: 'error', from: { path: '^routes/' }, to: { path: '^(app|server)\\.ts$|^cli/' } },
    { name: 'route-areas-are-sealed', severity: 'error', comment: 'no route area imports another\'s internals: share through services/ or repositories/', from: { path: '^routes/([^/]+)/' }, to: { path: '^routes/', pathNot: '^routes/$1/' } },
    { name: 'route-files-are-sealed', severity: 'error', from: { path: '^routes/[^/]+\\.ts$' }, to: { path: '^routes/', pathNot: '^routes/[^/]+\\.ts$' } },
    { name: 'entry-points-skip-routes', severity: 'error', comment: 'commands use services and repositories; only app.ts mounts routes', from: { path: '^(server\\.ts$|cli/)' }, to: { path: '^routes/' } },
    { name: 'only-entry-points-build-the-app', severity: 'error', from: { path: '^(plugins|routes|services|repositories|schemas|lib)/' }, to: { path: '^(app|server)\\.ts$' } },
    { name: 'product-never-imports-tests', severity: 'error', from: { pathNot: '^(test|bench)/' }, to: { path: '^(test|bench)/' } }
  ],
  options: {
    includeOnly: '^(app|server)\\.ts$|^(cli|lib|plugins|routes|services|repositories|schemas|test|bench)/',
    exclude: { path: '^(test|bench)/' },
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js', '.mjs'] }
  }
}
