//! The bots that run calls: the built-in dialog engine, which understands what the caller
//! said (intents with a confidence, spoken digits, dates and names) and walks a dialplan's
//! dialog toward a resolution, and the protocol through which an external bot does the
//! same over a WebSocket.

pub mod crm;
pub mod customers;
pub mod engine;
pub mod entities;
pub mod intent;
pub mod plan;
pub mod protocol;

use std::sync::Arc;

/// A dialplan's built-in dialog, ready for calls: the checked plan, the intent classifier
/// learnt from its examples, and its customer data.
#[derive(Debug, Clone)]
pub struct BuiltinDialog {
    pub plan: Arc<plan::DialogPlan>,
    pub intents: Arc<intent::IntentModel>,
    pub customers: Arc<customers::Customers>,
}

impl BuiltinDialog {
    /// Learns the plan's intents.
    pub fn new(plan: plan::DialogPlan, customers: customers::Customers) -> BuiltinDialog {
        let intents = intent::IntentModel::new(&plan.intent_examples());
        BuiltinDialog {
            plan: Arc::new(plan),
            intents: Arc::new(intents),
            customers: Arc::new(customers),
        }
    }

    /// A dialog for one call from `caller_number`, at the plan's start node or at `node`
    /// (where it takes over from an external bot, or picks up after an agent), with what
    /// the call has `carried` so far.
    pub fn start(
        &self,
        caller_number: Option<&str>,
        node: Option<&str>,
        carried: engine::Carried,
    ) -> engine::Dialog {
        engine::Dialog::resume(
            self.plan.clone(),
            self.intents.clone(),
            self.customers.clone(),
            caller_number,
            node.unwrap_or(&self.plan.start),
            carried,
        )
    }
}

/// The classifier follows from the plan, so two dialogs are the same when their plans and
/// customers are.
impl PartialEq for BuiltinDialog {
    fn eq(&self, other: &Self) -> bool {
        self.plan == other.plan && self.customers == other.customers
    }
}
