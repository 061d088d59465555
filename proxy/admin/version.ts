// The version SHOW VERSION reports; a test keeps it equal to package.json's.
export const DBPROXY_VERSION = '0.1.0';
