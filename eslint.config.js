// Type-aware lint: floating promises and misused promises are the bugs an actor runtime hides.
// eslint-plugin-regexp: regular expressions run over untrusted pages, fonts and messages, so none may
// backtrack super-linearly (a quadratic regex froze the fast path's event loop on a 64 KB page).
import tseslint from "typescript-eslint";
import regexp from "eslint-plugin-regexp";

export default tseslint.config(
  { ignores: ["node_modules/**", ".stack/**", "eslint.config.js"] },
  ...tseslint.configs.recommendedTypeChecked,
  regexp.configs["flat/recommended"],
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-explicit-any": "error",
      "@typescript-eslint/consistent-type-imports": "error",
      "@typescript-eslint/require-await": "off",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_" }],
      "regexp/no-super-linear-backtracking": "error",
      "regexp/no-super-linear-move": "error",
      // Rejecting control characters in URLs and names is deliberate (coordinator/normalise-url.ts).
      "no-control-regex": "off",
    },
  },
);
