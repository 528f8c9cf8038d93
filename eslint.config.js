import js from '@eslint/js';
import regexp from 'eslint-plugin-regexp';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules', '.data', 'dist', 'coverage'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    plugins: { regexp },
    rules: {
      '@typescript-eslint/no-explicit-any': 'off',
      // Most patterns run on text we did not write (mail, requests): each must match in linear time.
      'regexp/no-super-linear-backtracking': ['error', { report: 'potential' }],
      'regexp/no-super-linear-move': ['error', { report: 'potential' }],
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_' },
      ],
    },
  },
  {
    // Every workflow shares the modules of the workflow bundle (preloaded, src/worker.ts): a module-level variable would
    // carry one workflow's state into another's replay.
    files: ['src/workflows/**/*.ts', 'src/domain/**/*.ts'],
    rules: {
      'no-restricted-syntax': [
        'error',
        {
          selector:
            "Program > VariableDeclaration[kind!='const'], Program > ExportNamedDeclaration > VariableDeclaration[kind!='const']",
          message: 'no module-level let or var here: workflows share these modules; keep state in the workflow function',
        },
      ],
    },
  },
  {
    // Workflow code is replayed: no clocks, randomness or I/O of its own (the SDK's sandbox enforces the rest).
    files: ['src/workflows/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['node:*', '../activities/*', '../db/*', '../mail/*', '../api/*'],
              allowTypeImports: true,
              message: 'workflows only import types from the side-effect world',
            },
          ],
        },
      ],
    },
  },
);
