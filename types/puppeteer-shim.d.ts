// puppeteer-cluster's declarations import types from "puppeteer"; we run puppeteer-core, whose
// types are the same, so point the module there instead of relying on the full package.
declare module "puppeteer" {
  export * from "puppeteer-core";
}
