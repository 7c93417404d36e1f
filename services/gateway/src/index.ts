/** For the all-in-one process: the gateway as a library. */
export { type Gateway, type GatewayOptions, startGateway } from './app.js';
export { type GatewayConfig, loadGatewayConfig } from './config.js';
