// The trace viewer's entry point: the server says which view this page is (body data-view), and the view
// draws itself from the JSON API.
import { showList } from "./list.js";
import { showTrace } from "./trace.js";

const app = document.getElementById("app");
const { view, traceId } = document.body.dataset;
if (view === "trace") {
  showTrace(app, traceId);
} else {
  showList(app);
}
