// The hostile suite, one file so that its cases run one at a time.
//
// vitest runs test files in parallel (two at a time here) but the tests of one file
// in order. These cases load a 2-core machine on purpose (3,000 sockets, worker
// crashes, floods), and each is judged by a canary that must get every reply within
// 1 s: two of them side by side would measure each other, not the server. So each
// group lives in a *.cases.ts module and registers its tests here, in this order.
import './budgets.cases.js';
import './malformed.cases.js';
import './scanners.cases.js';
import './ordering.cases.js';
import './handlers.cases.js';
import './floods.cases.js';
import './fuzz.cases.js';
import './shutdown.cases.js';
