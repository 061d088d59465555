// The SQLSTATE codes the proxy itself raises (PostgreSQL Appendix A).
export const SQLSTATE = {
  protocolViolation: '08P01',
  connectionFailure: '08006',
  featureNotSupported: '0A000',
  invalidAuthorizationSpecification: '28000',
  invalidPassword: '28P01',
  tooManyConnections: '53300',
  adminShutdown: '57P01',
  cannotConnectNow: '57P03',
  idleSessionTimeout: '57P05',
  idleInTransactionTimeout: '25P03',
  queryCanceled: '57014',
  programLimitExceeded: '54000',
  invalidCatalogName: '3D000',
  syntaxError: '42601',
  insufficientPrivilege: '42501',
  internalError: 'XX000',
} as const;
