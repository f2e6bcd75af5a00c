/**
 * dependency-cruiser configuration (`npm run check:cycles`): src/ must hold no import cycles. A cycle
 * makes module start-up order matter (a value read before its module ran) and ties folders that
 * should be layered; type-only imports count too, because they tie the modules' designs together.
 */
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'an import cycle in src/: move the shared piece into a module both sides import',
      from: { path: '^src/' },
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
    exclude: { path: '^src/studio/ui/' },
  },
};
