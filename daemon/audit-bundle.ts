// Moved to src/audit/bundle-dir.ts (the verifier lives in src/audit); kept for importers of the old path.
export * from "../src/audit/bundle-dir.js";
